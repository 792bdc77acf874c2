"""Normalisation layers with PyTorch's semantics: ``batch_norm``, ``layer_norm``, ``group_norm``.

Each takes ``torch.nn.functional``'s arguments and defaults, checks them as torch does,
and returns a new array (of the input's dtype, promoted with ``weight`` and ``bias`` as
NumPy promotes), computed by Numba kernels in one pass over the output (statistics in
float64: :mod:`numbaconv.cpu.norm`).

>>> import numpy as np, numbaconv
>>> x = np.arange(8.0).reshape(2, 2, 2)
>>> numbaconv.batch_norm(x, np.zeros(2), np.ones(2), eps=0.0)
array([[[0., 1.],
        [2., 3.]],
<BLANKLINE>
       [[4., 5.],
        [6., 7.]]])
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import array_pool, config
from .spec import _is_int, check_float_array
from ._dask_dispatch import on_dask_arrays
from .devices import on_gpu_arrays
from .tracing import differentiable


def _number(op: str, name: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    return float(value)


def _per_channel(op: str, name: str, value, channels: int, dtype, required: bool = False):
    """``value`` as a contiguous (channels,) array of ``dtype`` (None when absent)."""
    if value is None:
        if required:
            raise ValueError(f"{op}: {name} must be given in evaluation mode "
                             f"(training=False)")
        return None
    array = check_float_array(op, name, value)
    if array.shape != (channels,):
        raise ValueError(f"{op}: {name} should contain {channels} elements (one per "
                         f"channel of the input's axis 1), got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=dtype)


def _as_3d(x: np.ndarray) -> np.ndarray:
    """(N, C, *) -> contiguous (N, C, P) (P counted, so that empty inputs reshape too)."""
    return np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))


#: Channels per thread from which training-mode ``batch_norm`` computes its statistics and
#: its output in one launch (``cpu.norm.channel_normalize``, a job per channel); with
#: fewer, the output pass runs over (image, channel) planes (``channel_affine``), so that
#: every thread has work.
BATCH_NORM_FUSED_CHANNELS_PER_THREAD = 4


@differentiable
@on_dask_arrays
@on_gpu_arrays
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-05):
    """Batch normalisation, as ``torch.nn.functional.batch_norm``.

    input (N, C, *): each channel c is normalised with a mean and variance, then scaled by
    ``weight[c]`` and shifted by ``bias[c]`` (1 and 0 when None):
    out = (x - mean) / sqrt(var + eps) * weight + bias.

    * ``training=False``: mean and var are ``running_mean`` and ``running_var`` (C,),
      which must be given; one pass, x * scale + shift.
    * ``training=True``: they are the batch's statistics over N and the spatial axes
      (the biased variance); ``running_mean`` and ``running_var``, when given, are
      updated in place as torch updates them: r = (1 - momentum) * r + momentum * s, with
      the unbiased variance for ``running_var``. Needs more than one value per channel.

    >>> import numpy as np, numbaconv
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])          # (N=2, C=2)
    >>> mean, var = np.zeros(2), np.ones(2)
    >>> numbaconv.batch_norm(x, mean, var, training=True, eps=0.0)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> mean, var                                         # updated in place
    (array([0.2, 2. ]), array([ 1.1, 20.9]))
    """
    op = "batch_norm"
    import numba  # (imported here: importing numbaconv compiles and imports no Numba)

    from .cpu.norm import channel_moments, channel_normalize

    x = check_float_array(op, "input", input)
    if x.ndim < 2:
        raise ValueError(f"{op}: expected input with at least 2 dimensions (N, C, *), got "
                         f"shape {x.shape}")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: training must be a bool, got {training!r}")
    momentum, eps = _number(op, "momentum", momentum), _number(op, "eps", eps)
    channels = x.shape[1]
    if training:
        for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
            if stat is not None and not (isinstance(stat, np.ndarray) and stat.flags.writeable):
                raise TypeError(f"{op}: {name} must be a writeable NumPy array when training "
                                f"(it is updated in place), got {type(stat).__name__}")
    mean_in = _per_channel(op, "running_mean", running_mean, channels, np.float64, not training)
    var_in = _per_channel(op, "running_var", running_var, channels, np.float64, not training)
    w = _per_channel(op, "weight", weight, channels, np.float64)
    b = _per_channel(op, "bias", bias, channels, np.float64)
    dtype = np.result_type(x, *(np.asarray(a).dtype for a in (weight, bias) if a is not None))
    x3 = _as_3d(x.astype(dtype, copy=False))
    work = x.size * config.WORK_PER_VALUE_READ
    if training:
        count = x3.shape[0] * x3.shape[2]
        if count <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        mean, var = np.empty(channels), np.empty(channels)
        fused = channels >= BATCH_NORM_FUSED_CHANNELS_PER_THREAD * numba.get_num_threads()
        if fused:  # statistics and output in one launch
            out = array_pool.empty(x3.shape, dtype)
            unused = np.empty(0)
            with config.one_share_for(work):
                channel_normalize(x3, unused if w is None else w, unused if b is None else b,
                                  w is not None, b is not None, eps, out, mean, var)
        else:
            with config.one_share_for(work):
                channel_moments(x3, mean, var)
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * mean_in + momentum * mean
        if running_var is not None:
            running_var[...] = (1 - momentum) * var_in + momentum * var * count / (count - 1)
        if fused:
            return out.reshape(x.shape)
    else:
        mean, var = mean_in, var_in
    scale, shift = batch_norm_scale_and_shift(mean, var, w, b, eps)
    return _channel_affine_3d(x3, scale, shift, False).reshape(x.shape)


def batch_norm_scale_and_shift(mean, var, weight, bias, eps) -> tuple:
    """(scale, shift), float64 (C,): batch norm as x * scale + shift, from the statistics
    and the affine parameters (float64 (C,) arrays; weight and bias may be None)."""
    scale = 1.0 / np.sqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    return scale, shift


def scale_and_shift_channels(x, scale, shift, relu=False):
    """x[:, c] * scale[c] + shift[c], then max(., 0) with ``relu``, in one parallel pass
    (:func:`numbaconv.cpu.norm.channel_affine`): x (N, C, *) float; scale, shift (C,)
    float64, rounded to x's dtype first."""
    return _channel_affine_3d(_as_3d(x), scale, shift, relu).reshape(x.shape)


def _channel_affine_3d(x3, scale, shift, relu):
    from .cpu.norm import channel_affine

    out = array_pool.empty(x3.shape, x3.dtype)
    if out.size:
        with config.one_share_for(x3.size * config.WORK_PER_VALUE_READ):
            channel_affine(x3, scale.astype(x3.dtype), shift.astype(x3.dtype), relu, out)
    return out


def _normalized_shape(op: str, normalized_shape) -> tuple:
    if _is_int(normalized_shape):
        return (int(normalized_shape),)
    try:
        shape = tuple(normalized_shape)
    except TypeError:
        raise TypeError(f"{op}: normalized_shape must be an int or a sequence of ints, got "
                        f"{normalized_shape!r}") from None
    if not all(_is_int(s) for s in shape):
        raise TypeError(f"{op}: normalized_shape must be an int or a sequence of ints, got "
                        f"{normalized_shape!r}")
    return tuple(int(s) for s in shape)


def layer_norm_shape(op: str, input_shape: tuple, normalized_shape) -> tuple:
    """``normalized_shape`` as a tuple, checked against the input's trailing axes."""
    shape = _normalized_shape(op, normalized_shape)
    if not shape or tuple(input_shape[len(input_shape) - len(shape):]) != shape \
            or len(shape) > len(input_shape):
        raise ValueError(f"{op}: Given normalized_shape={list(shape)}, expected input with "
                         f"shape [*, {', '.join(map(str, shape))}], but got input of size "
                         f"{list(input_shape)}")
    return shape


def check_group_norm(op: str, input_shape: tuple, num_groups) -> None:
    """torch's rules for group_norm's input shape and ``num_groups``."""
    if len(input_shape) < 2:
        raise ValueError(f"{op}: expected input with at least 2 dimensions (N, C, *), got "
                         f"shape {tuple(input_shape)}")
    if not _is_int(num_groups) or num_groups <= 0:
        raise ValueError(f"{op}: num_groups must be a positive int, got {num_groups!r}")
    channels = input_shape[1]
    if channels % num_groups:
        raise ValueError(f"{op}: Expected number of channels in input to be divisible by "
                         f"num_groups, but got input of shape {list(input_shape)} and "
                         f"num_groups={num_groups}")
    if input_shape[0] * channels // num_groups * math.prod(input_shape[2:]) == 1:  # torch's
        raise ValueError(f"{op}: expected more than 1 value per group, got input of shape "
                         f"{tuple(input_shape)} and num_groups={num_groups}")


@differentiable
@on_gpu_arrays
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05):
    """Layer normalisation, as ``torch.nn.functional.layer_norm``: over the last
    ``len(normalized_shape)`` axes of ``input`` (which must end with ``normalized_shape``),
    out = (x - mean) / sqrt(var + eps) * weight + bias (biased variance; ``weight`` and
    ``bias`` of shape ``normalized_shape``, 1 and 0 when None).

    >>> import numpy as np, numbaconv
    >>> numbaconv.layer_norm(np.array([[1.0, 3.0], [2.0, 6.0]]), 2, eps=0.0)
    array([[-1.,  1.],
           [-1.,  1.]])
    """
    op = "layer_norm"
    from .cpu.norm import row_normalize

    x = check_float_array(op, "input", input)
    shape = layer_norm_shape(op, x.shape, normalized_shape)
    eps = _number(op, "eps", eps)
    size = math.prod(shape)
    dtype = x.dtype
    affine = []
    for name, value, fill in (("weight", weight, 1), ("bias", bias, 0)):
        if value is None:
            affine.append(np.full(size, fill, dtype))
            continue
        array = check_float_array(op, name, value)
        if array.shape != shape:
            raise ValueError(f"{op}: {name} must have shape normalized_shape {shape}, got "
                             f"{array.shape}")
        dtype = np.result_type(dtype, array.dtype)
        affine.append(array.reshape(size))
    x2 = np.ascontiguousarray(x, dtype=dtype).reshape(math.prod(x.shape) // size if size
                                                      else 0, size)
    out = array_pool.empty(x2.shape, dtype)
    if out.size:
        with config.one_share_for(x.size * config.WORK_PER_VALUE_READ):
            row_normalize(x2, *(np.ascontiguousarray(a, dtype=dtype) for a in affine), eps,
                          out)
    return out.reshape(x.shape)


@differentiable
@on_gpu_arrays
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-05):
    """Group normalisation, as ``torch.nn.functional.group_norm``: input (N, C, *) with C
    divisible by ``num_groups``; each image's channels are split into ``num_groups``
    groups, each normalised over its channels and positions (biased variance), then each
    channel scaled by ``weight[c]`` and shifted by ``bias[c]`` (C,).

    >>> import numpy as np, numbaconv
    >>> x = np.array([[[1.0], [3.0], [5.0], [9.0]]])      # (N=1, C=4, L=1)
    >>> numbaconv.group_norm(x, 2, eps=0.0)[0, :, 0]
    array([-1.,  1., -1.,  1.])
    """
    op = "group_norm"
    from .cpu.norm import group_normalize

    x = check_float_array(op, "input", input)
    check_group_norm(op, x.shape, num_groups)
    channels = x.shape[1]
    eps = _number(op, "eps", eps)
    dtype = x.dtype
    affine = []
    for name, value, fill in (("weight", weight, 1), ("bias", bias, 0)):
        array = _per_channel(op, name, value, channels, None)
        if array is None:
            array = np.full(channels, fill, dtype)
        dtype = np.result_type(dtype, array.dtype)
        affine.append(array)
    x3 = _as_3d(x.astype(dtype, copy=False))
    out = array_pool.empty(x3.shape, dtype)
    if out.size:
        with config.one_share_for(x.size * config.WORK_PER_VALUE_READ):
            group_normalize(x3, int(num_groups),
                            *(np.ascontiguousarray(a, dtype=dtype) for a in affine), eps, out)
    return out.reshape(x.shape)
