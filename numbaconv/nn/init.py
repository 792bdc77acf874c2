"""Parameter initialisation with ``torch.nn.init``'s names, arguments and formulas.

Each ``name_`` function fills a NumPy array in place and returns it, as torch's fill a
tensor and return it, so the examples of torch's documentation run as they are::

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> conv = nn.Conv2d(3, 16, 3)
    >>> w = nn.init.xavier_normal_(conv.weight)
    >>> w is conv.weight
    True

``tensor`` is a writeable NumPy array (a float one for the random fills); a buffer that
NumPy views without copying, such as ``conv.weight.data``, works too (the seed of many
PyTorch scripts, ``nn.init.xavier_normal_(conv.weight.data)``). A read-only array is
refused: filling a copy would silently leave the parameter unchanged.

``generator`` is a ``numpy.random.Generator`` or an int seed; None (the default) draws
from numbaconv's default generator, which ``numbaconv.manual_seed`` seeds. Values are
drawn in float64 and rounded to the array's dtype. The distributions are torch's; the
values differ from torch's for the same seed (the random streams differ).

Fans: for a weight of shape (out, in, *kernel), fan_in = in * prod(kernel) and fan_out =
out * prod(kernel), as torch computes them (``Linear``'s (out_features, in_features)
weight included).
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from ..random import as_generator

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_",
           "zeros_", "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
           "kaiming_normal_", "orthogonal_", "sparse_", "uniform", "normal", "constant", "eye",
           "dirac", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
           "orthogonal", "sparse"]

_LINEAR_FUNCTIONS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                     "conv_transpose2d", "conv_transpose3d")
_NONLINEARITIES = _LINEAR_FUNCTIONS + ("sigmoid", "tanh", "relu", "leaky_relu", "selu")


# --------------------------------------------------------------------------- helpers


def _writeable(function: str, tensor, floating: bool = True) -> np.ndarray:
    """``tensor`` as the ndarray to fill in place (a view of a buffer, never a copy)."""
    if isinstance(tensor, np.ndarray):
        array = tensor
    elif isinstance(tensor, memoryview):
        array = np.asarray(tensor)  # a view of the same memory, shape and format kept
    else:
        raise TypeError(f"{function}: tensor must be a NumPy array to fill in place, got "
                        f"{type(tensor).__name__}")
    if not array.flags.writeable:
        raise ValueError(f"{function}: tensor is read-only; pass a writeable array (filling "
                         f"a copy would leave the original unchanged)")
    kinds = "f" if floating else "fiub"
    if array.dtype.kind not in kinds:
        wanted = "a float" if floating else "a numeric"
        raise TypeError(f"{function}: tensor must be {wanted} array, got dtype {array.dtype}")
    return array


def _number(function: str, name: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{function}: {name} must be a real number, got {value!r}")
    return float(value)


def _fill(array: np.ndarray, values) -> np.ndarray:
    array[...] = values  # rounds float64 draws to the array's dtype
    return array


def _calculate_fan_in_and_fan_out(array: np.ndarray) -> tuple:
    """(fan_in, fan_out) of a weight of 2 or more dimensions, as torch computes them."""
    if array.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than "
                         "2 dimensions")
    receptive = math.prod(array.shape[2:])
    return array.shape[1] * receptive, array.shape[0] * receptive


def _calculate_correct_fan(function: str, array: np.ndarray, mode) -> int:
    valid_modes = ["fan_in", "fan_out"]
    if not isinstance(mode, str) or mode.lower() not in valid_modes:
        raise ValueError(f"{function}: Mode {mode} not supported, please use one of "
                         f"{valid_modes}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(array)
    return fan_in if mode.lower() == "fan_in" else fan_out


def _is_empty(function: str, array: np.ndarray) -> bool:
    if array.size == 0:
        warnings.warn(f"{function}: Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


# --------------------------------------------------------------------------- gains


def calculate_gain(nonlinearity, param=None) -> float:
    """The recommended gain for ``nonlinearity`` (a ``torch.nn.functional`` name).

    ==================  ====================================
    nonlinearity        gain
    ==================  ====================================
    linear, conv*d,     1
    conv_transpose*d,
    sigmoid
    tanh                5/3
    relu                sqrt(2)
    leaky_relu          sqrt(2 / (1 + negative_slope^2)),
                        ``param`` the slope (default 0.01)
    selu                3/4
    ==================  ====================================

    >>> from numbaconv import nn
    >>> nn.init.calculate_gain("leaky_relu", 0.2)
    1.3867504905630728
    """
    if nonlinearity in _LINEAR_FUNCTIONS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4  # torch's empirical value (pytorch/pytorch#50664)
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}; expected one of "
                     f"{', '.join(_NONLINEARITIES)}")


# --------------------------------------------------------------------------- plain fills


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill ``tensor`` with draws from U(a, b).

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> w = nn.init.uniform_(np.empty((3, 5), np.float32), generator=0)
    >>> bool(((0 <= w) & (w < 1)).all())
    True
    """
    array = _writeable("uniform_", tensor)
    a, b = _number("uniform_", "a", a), _number("uniform_", "b", b)
    if a > b:
        raise ValueError(f"uniform_: expects a <= b (the range [a, b)), got a={a}, b={b}")
    return _fill(array, as_generator(generator, "generator").uniform(a, b, array.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill ``tensor`` with draws from N(mean, std^2).

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.init.normal_(np.empty((3, 5)), std=0.02, generator=0).shape
    (3, 5)
    """
    array = _writeable("normal_", tensor)
    mean, std = _number("normal_", "mean", mean), _number("normal_", "std", std)
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    return _fill(array, as_generator(generator, "generator").normal(mean, std, array.shape))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill ``tensor`` with draws from N(mean, std^2) truncated to [a, b]: the normal
    distribution conditioned on lying in [a, b] (torch redraws the values outside).

    Drawn exactly by inverting the truncated distribution's CDF (SciPy's ``truncnorm``),
    however far [a, b] lies in the tails. As torch, warns when ``mean`` is more than 2
    std outside [a, b].

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> w = nn.init.trunc_normal_(np.empty(1000), std=0.02, a=-0.04, b=0.04, generator=0)
    >>> bool((np.abs(w) <= 0.04).all())
    True
    """
    from scipy.stats import truncnorm

    array = _writeable("trunc_normal_", tensor)
    mean, std = _number("trunc_normal_", "mean", mean), _number("trunc_normal_", "std", std)
    a, b = _number("trunc_normal_", "a", a), _number("trunc_normal_", "b", b)
    if not std > 0:
        raise ValueError(f"trunc_normal_: std must be > 0, got {std}")
    if not a < b:
        raise ValueError(f"trunc_normal_: expects a < b, got a={a}, b={b}")
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
                      "The distribution of values may be incorrect.", stacklevel=2)
    rng = as_generator(generator, "generator")
    values = truncnorm.rvs((a - mean) / std, (b - mean) / std, loc=mean, scale=std,
                           size=array.shape, random_state=rng)
    _fill(array, values)
    # Rounding to float32 must not step outside [a, b]: clip to the float32 values inside.
    low, high = array.dtype.type(a), array.dtype.type(b)
    low = np.nextafter(low, high) if low < a else low
    high = np.nextafter(high, low) if high > b else high
    return np.clip(array, low, high, out=array)


def constant_(tensor, val):
    """Fill ``tensor`` with ``val``.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.init.constant_(np.empty(3), 0.3)
    array([0.3, 0.3, 0.3])
    """
    array = _writeable("constant_", tensor, floating=False)
    return _fill(array, _number("constant_", "val", val))


def ones_(tensor):
    """Fill ``tensor`` with ones.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.init.ones_(np.empty(2, np.float32))
    array([1., 1.], dtype=float32)
    """
    return _fill(_writeable("ones_", tensor, floating=False), 1)


def zeros_(tensor):
    """Fill ``tensor`` with zeros.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.init.zeros_(np.empty(2, np.float32))
    array([0., 0.], dtype=float32)
    """
    return _fill(_writeable("zeros_", tensor, floating=False), 0)


def eye_(tensor):
    """Fill the 2-D ``tensor`` with the identity matrix (ones on the main diagonal of a
    rectangular one): a ``Linear`` layer that passes as many inputs through as it can.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.init.eye_(np.empty((2, 3)))
    array([[1., 0., 0.],
           [0., 1., 0.]])
    """
    array = _writeable("eye_", tensor, floating=False)
    if array.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    return _fill(array, np.eye(*array.shape))


def dirac_(tensor, groups=1):
    """Fill the 3-, 4- or 5-D ``tensor`` (a Conv1d/2d/3d weight) with the Dirac delta: a
    convolution that copies as many input channels to its outputs as it can, each of
    the ``groups`` groups of output channels its own group of inputs.

    >>> import numpy as np, numbaconv
    >>> from numbaconv import nn
    >>> w = nn.init.dirac_(np.empty((4, 4, 3, 3), np.float32))
    >>> x = np.arange(2 * 4 * 5 * 5, dtype=np.float32).reshape(2, 4, 5, 5)
    >>> bool((numbaconv.conv2d(x, w, padding=1) == x).all())
    True
    """
    array = _writeable("dirac_", tensor, floating=False)
    if array.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"dirac_: groups must be a positive int, got {groups!r}")
    if array.shape[0] % groups:
        raise ValueError("dim 0 must be divisible by groups")
    per_group = array.shape[0] // groups
    centre = tuple(size // 2 for size in array.shape[2:])
    array[...] = 0
    for g in range(groups):
        for d in range(min(per_group, array.shape[1])):
            array[(g * per_group + d, d) + centre] = 1
    return array


# --------------------------------------------------------------------------- scaled fills


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Fill ``tensor`` from U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot &
    Bengio, 2010).

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> w = nn.init.xavier_uniform_(np.empty((3, 5)), gain=nn.init.calculate_gain("relu"))
    >>> bool((np.abs(w) <= np.sqrt(2) * np.sqrt(6 / 8)).all())
    True
    """
    array = _writeable("xavier_uniform_", tensor)
    bound = math.sqrt(3.0) * _xavier_std("xavier_uniform_", array, gain)
    return _fill(array, as_generator(generator, "generator").uniform(-bound, bound,
                                                                     array.shape))


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Fill ``tensor`` from N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> conv = nn.Conv2d(16, 33, 3, rng=0)
    >>> w = nn.init.xavier_normal_(conv.weight, generator=0)
    >>> round(float(w.std()), 2)  # sqrt(2 / (16*9 + 33*9))
    0.07
    """
    array = _writeable("xavier_normal_", tensor)
    std = _xavier_std("xavier_normal_", array, gain)
    return _fill(array, as_generator(generator, "generator").normal(0.0, std, array.shape))


def _xavier_std(function: str, array: np.ndarray, gain) -> float:
    gain = _number(function, "gain", gain)
    fan_in, fan_out = _calculate_fan_in_and_fan_out(array)
    if fan_in + fan_out == 0:
        raise ValueError(f"{function}: fan_in + fan_out is 0 for a tensor of shape "
                         f"{array.shape}")
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """Fill ``tensor`` from U(-bound, bound), bound = gain * sqrt(3 / fan) (He et al.,
    2015), ``fan`` fan_in or fan_out by ``mode``, the gain ``calculate_gain(nonlinearity,
    a)`` (``a``: the negative slope of a following leaky ReLU). torch's default for
    Conv and Linear weights is ``kaiming_uniform_(w, a=math.sqrt(5))``.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> w = nn.init.kaiming_uniform_(np.empty((3, 5)), mode="fan_in", nonlinearity="relu")
    >>> bool((np.abs(w) <= np.sqrt(2) * np.sqrt(3 / 5)).all())
    True
    """
    array = _writeable("kaiming_uniform_", tensor)
    if _is_empty("kaiming_uniform_", array):
        return array
    bound = math.sqrt(3.0) * _kaiming_std("kaiming_uniform_", array, a, mode, nonlinearity)
    return _fill(array, as_generator(generator, "generator").uniform(-bound, bound,
                                                                     array.shape))


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """Fill ``tensor`` from N(0, std^2), std = gain / sqrt(fan) (see
    :func:`kaiming_uniform_` for ``a``, ``mode`` and ``nonlinearity``).

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> w = nn.init.kaiming_normal_(np.empty((256, 128, 3, 3)), mode="fan_out",
    ...                             nonlinearity="relu", generator=0)
    >>> round(float(w.std()), 3)  # sqrt(2 / (256 * 9))
    0.029
    """
    array = _writeable("kaiming_normal_", tensor)
    if _is_empty("kaiming_normal_", array):
        return array
    std = _kaiming_std("kaiming_normal_", array, a, mode, nonlinearity)
    return _fill(array, as_generator(generator, "generator").normal(0.0, std, array.shape))


def _kaiming_std(function, array, a, mode, nonlinearity) -> float:
    fan = _calculate_correct_fan(function, array, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def orthogonal_(tensor, gain=1, generator=None):
    """Fill ``tensor`` (2 or more dimensions, the trailing ones flattened) with a (semi-)
    orthogonal matrix times ``gain`` (Saxe et al., 2013): orthonormal rows when it is
    wide, orthonormal columns when it is tall; the QR factorisation of a Gaussian matrix,
    with signs that make it uniformly (Haar) distributed.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> w = nn.init.orthogonal_(np.empty((3, 5)), generator=0)
    >>> bool(np.allclose(w @ w.T, np.eye(3)))
    True
    """
    array = _writeable("orthogonal_", tensor)
    if array.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    gain = _number("orthogonal_", "gain", gain)
    if array.size == 0:
        return array
    rows = array.shape[0]
    cols = array.size // rows
    flat = as_generator(generator, "generator").standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # Mezzadri (2007): without it Q is not Haar-distributed
    if rows < cols:
        q = q.T
    return _fill(array, (gain * q).reshape(array.shape))


def sparse_(tensor, sparsity, std=0.01, generator=None):
    """Fill the 2-D ``tensor`` as a sparse matrix (Martens, 2010): N(0, std^2) values with
    ceil(sparsity * rows) zeros in each column, at random rows.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> w = nn.init.sparse_(np.empty((10, 4)), sparsity=0.3, generator=0)
    >>> (w == 0).sum(axis=0).tolist()
    [3, 3, 3, 3]
    """
    array = _writeable("sparse_", tensor)
    if array.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    sparsity = _number("sparse_", "sparsity", sparsity)
    std = _number("sparse_", "std", std)
    if std < 0:
        raise ValueError(f"sparse_: std must be >= 0, got {std}")
    rows, cols = array.shape
    zeros = min(rows, max(0, math.ceil(sparsity * rows)))
    rng = as_generator(generator, "generator")
    values = rng.normal(0.0, std, array.shape)
    for col in range(cols):
        values[rng.permutation(rows)[:zeros], col] = 0
    return _fill(array, values)


# --------------------------------------------------------------------------- torch's old names


def _deprecated(function):
    """torch's deprecated alias of ``function`` (its name without the trailing underscore):
    the same fill, after a FutureWarning, as torch gives."""
    new_name = function.__name__
    old_name = new_name[:-1]

    def deprecated_init(*args, **kwargs):
        warnings.warn(f"`nn.init.{old_name}` is now deprecated in favor of "
                      f"`nn.init.{new_name}`.", FutureWarning, stacklevel=2)
        return function(*args, **kwargs)

    deprecated_init.__name__ = deprecated_init.__qualname__ = old_name
    deprecated_init.__doc__ = f"Deprecated (as in torch): use :func:`{new_name}`."
    return deprecated_init


uniform = _deprecated(uniform_)
normal = _deprecated(normal_)
constant = _deprecated(constant_)
eye = _deprecated(eye_)
dirac = _deprecated(dirac_)
xavier_uniform = _deprecated(xavier_uniform_)
xavier_normal = _deprecated(xavier_normal_)
kaiming_uniform = _deprecated(kaiming_uniform_)
kaiming_normal = _deprecated(kaiming_normal_)
orthogonal = _deprecated(orthogonal_)
sparse = _deprecated(sparse_)


# --------------------------------------------------------------------------- module defaults


def generator(rng) -> np.random.Generator:
    """The Generator a module's ``rng`` option names (see :mod:`numbaconv.random`)."""
    return as_generator(rng)


def fan_in(weight_shape: tuple) -> int:
    """torch's fan-in of a weight: shape[1] times the kernel's size (shape[2:])."""
    return weight_shape[1] * math.prod(weight_shape[2:]) if len(weight_shape) > 1 else 0


def default_weight_and_bias(weight_shape: tuple, bias_shape, rng, dtype) -> tuple:
    """(weight, bias or None) as torch's Conv/Linear ``reset_parameters`` draws them:
    ``kaiming_uniform_(weight, a=sqrt(5))`` first, then the bias from U(-1/sqrt(fan_in),
    1/sqrt(fan_in)), from the same generator. With a = sqrt(5) the Kaiming gain is
    sqrt(1/3), so the weight's bound gain * sqrt(3 / fan_in) is 1/sqrt(fan_in) too."""
    fan = fan_in(weight_shape)
    bound = 1.0 / math.sqrt(fan) if fan > 0 else 0.0
    weight = rng.uniform(-bound, bound, size=weight_shape).astype(dtype)
    if bias_shape is None:
        return weight, None
    return weight, rng.uniform(-bound, bound, size=bias_shape).astype(dtype)
