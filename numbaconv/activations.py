"""Activations with PyTorch's semantics, for NumPy arrays.

Element-wise and memory-bound: NumPy's (and SciPy's) ufuncs already run them at memory
speed, so these are thin, validated wrappers rather than Numba kernels. Every function
returns a new array of the input's float dtype; NaN propagates and inf saturates as in
torch.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import special

from .random import as_generator
from .spec import check_float_array


def _number(op: str, name: str, value) -> float:
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    return float(value)


def _fresh(x):
    """A new array of x's shape and dtype for a ufunc's ``out=``: a ufunc called on a 0-d
    array returns a NumPy scalar, where torch returns a 0-d tensor; with ``out=`` it
    returns the (0-d) array."""
    return np.empty(x.shape, x.dtype)


def relu(input):
    """max(x, 0); NaN stays NaN. ``relu(np.array([-1.0, 2.0]))`` -> ``[0., 2.]``."""
    x = check_float_array("relu", "input", input)
    return np.maximum(x, x.dtype.type(0), out=_fresh(x))


def sigmoid(input):
    """1 / (1 + exp(-x)), without overflow warnings for large |x|."""
    x = check_float_array("sigmoid", "input", input)
    return special.expit(x, out=_fresh(x))


def tanh(input):
    """The hyperbolic tangent, element-wise."""
    x = check_float_array("tanh", "input", input)
    return np.tanh(x, out=_fresh(x))


def _leaky(x, slope):
    return np.where(x > 0, x, x * slope).astype(x.dtype, copy=False)


def leaky_relu(input, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    x = check_float_array("leaky_relu", "input", input)
    return _leaky(x, x.dtype.type(_number("leaky_relu", "negative_slope", negative_slope)))


def prelu(input, weight):
    """leaky_relu with learnt slopes: ``weight`` holds 1 slope, or one per channel (axis 1
    of an input with 2 or more dimensions)."""
    x = check_float_array("prelu", "input", input)
    w = check_float_array("prelu", "weight", weight)
    if w.ndim > 1:
        raise ValueError(f"prelu: expected weight to be a scalar or 1-D array, got shape "
                         f"{w.shape}")
    channels = x.shape[1] if x.ndim >= 2 else 1
    if w.size not in (1, channels):
        raise ValueError(f"prelu: weight has {w.size} slopes; expected 1 or one per channel "
                         f"({channels}, input axis 1)")
    dtype = np.result_type(x, w)
    slope = w.reshape(()) if w.size == 1 else w.reshape((1, channels) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, x * slope).astype(dtype, copy=False)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, rng=None):
    """Randomised leaky ReLU. Evaluation (``training=False``) uses the mean slope
    (lower + upper) / 2; training draws a slope per element, uniform in [lower, upper],
    from ``rng`` (a ``numpy.random.Generator`` or an int seed; None: numbaconv's default
    generator, which ``numbaconv.manual_seed`` seeds)."""
    x = check_float_array("rrelu", "input", input)
    lower, upper = _number("rrelu", "lower", lower), _number("rrelu", "upper", upper)
    if lower > upper:
        raise ValueError(f"rrelu: lower bound should be less than or equal to the upper bound, "
                         f"got lower={lower}, upper={upper}")
    if not training:
        return _leaky(x, x.dtype.type((lower + upper) / 2))
    slopes = as_generator(rng).uniform(lower, upper, size=x.shape).astype(x.dtype)
    return _leaky(x, slopes)


def linear(input, weight, bias=None):
    """y = x W^T + b, as ``torch.nn.functional.linear``.

    input (*, in_features); weight (out_features, in_features), or (in_features,) for a
    dot product over the last axis; bias broadcastable to the output, usually
    (out_features,). Returns (*, out_features). BLAS does the work (``np.matmul``).

    >>> import numpy as np, numbaconv
    >>> numbaconv.linear(np.ones((2, 3)), np.ones((4, 3)), np.arange(4.0))
    array([[3., 4., 5., 6.],
           [3., 4., 5., 6.]])
    """
    x = check_float_array("linear", "input", input)
    w = check_float_array("linear", "weight", weight)
    b = None if bias is None else check_float_array("linear", "bias", bias)
    if x.ndim == 0 or w.ndim == 0:
        raise ValueError(f"linear: input and weight must be at least 1-D, got shapes {x.shape} "
                         f"and {w.shape}")
    if w.ndim > 2:
        raise ValueError(f"linear: weight must be (out_features, in_features) or "
                         f"(in_features,), got shape {w.shape}")
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(f"linear: input's last axis ({x.shape[-1]}) must equal weight's "
                         f"in_features ({w.shape[-1]}); shapes {x.shape} and {w.shape}")
    if b is not None and w.ndim == 1 and (b.ndim >= 1 or x.ndim == 2):
        # torch's rule: with a 1-D weight, only a 0-d bias, and not for a 2-D input
        raise ValueError(f"linear: a 1-D weight takes a bias only if it is a scalar (0-d) and "
                         f"the input is not 2-D; got input {x.shape}, bias {b.shape}")
    dtype = np.result_type(*[a for a in (x, w, b) if a is not None])
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    if x.ndim > 2 and w.ndim == 2:
        # One (rows x in) @ (in x out) product: np.matmul on a stack would make one small
        # BLAS call per leading index (ConvNeXt's (1, 7, 7, 3072) input: 5x torch's time).
        out = np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
    else:
        out = np.matmul(x, w.T)
    if b is not None:
        if np.broadcast_shapes(out.shape, b.shape) != out.shape:
            raise ValueError(f"linear: bias of shape {b.shape} does not broadcast to the output "
                             f"shape {out.shape}")
        out = out + b.astype(dtype, copy=False)
    return np.asarray(out, dtype=dtype)
