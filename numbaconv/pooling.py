"""Pooling and unpooling with PyTorch's semantics, for NumPy arrays (CPU).

``max_pool1d/2d``, ``avg_pool1d/2d`` and ``max_unpool2d`` take torch's arguments and
defaults (``stride=None`` means ``kernel_size``), check them as torch does
(:mod:`numbaconv.pool_spec`), and return new arrays; indices are int64, flat per
(n, c) plane of the input, as torch returns them.
"""

from __future__ import annotations

import numpy as np

from . import array_pool, config
from .pool_spec import divisor, pool_spec, unpool_spec
from .spec import _is_int, check_float_array
from ._dask_dispatch import on_dask_arrays
from .devices import on_gpu_arrays
from .tracing import differentiable


def _as_4d(spec, x):
    return np.ascontiguousarray(x.reshape(spec.batch, spec.channels, spec.in_height,
                                          spec.in_width))


def _max_pool(op, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    from .cpu.pool import max_pool2d_kernel, max_pool2d_rows, max_pool2d_separable

    x = check_float_array(op, "input", input)
    spec = pool_spec(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    out = array_pool.empty((spec.batch, spec.channels, spec.out_height, spec.out_width), x.dtype)
    geometry = (*spec.kernel, *spec.stride, *spec.padding, *spec.dilation)
    if not return_indices:
        if out.size:
            with config.one_share_for(out.size * spec.kernel[0] * spec.kernel[1]
                                          * config.WORK_PER_VALUE_READ):
                unit_stride = spec.stride == (1, 1)  # (GoogLeNet's, 4-6x the row kernel)
                (max_pool2d_separable if unit_stride else max_pool2d_rows)(
                    _as_4d(spec, x), out, *geometry)
        return out.reshape(spec.output_shape)
    indices = np.empty(out.shape, np.int64)
    if out.size:
        with config.one_share_for(out.size * spec.kernel[0] * spec.kernel[1]
                                          * config.WORK_PER_VALUE_READ):
            max_pool2d_kernel(_as_4d(spec, x), out, indices, *geometry)
    return out.reshape(spec.output_shape), indices.reshape(spec.output_shape)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    input (N, C, H, W) or (C, H, W); ``padding`` (implicit -inf) at most half the kernel;
    H_out = floor((H + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1 (ceil
    with ``ceil_mode``, where the last window must start inside the input or the left
    padding). NaN in a window gives NaN. With ``return_indices`` also returns the int64
    position of each maximum, flat within its (H, W) plane (for :func:`max_unpool2d`).

    >>> import numpy as np, numbaconv
    >>> numbaconv.max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    """
    return _max_pool("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-D max pooling, as ``torch.nn.functional.max_pool1d``: input (N, C, L) or (C, L);
    see :func:`max_pool2d`."""
    return _max_pool("max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def _avg_pool(op, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    from .cpu.pool import avg_pool2d_rows

    x = check_float_array(op, "input", input)
    spec = pool_spec(op, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    override = divisor(op, divisor_override)
    out = array_pool.empty((spec.batch, spec.channels, spec.out_height, spec.out_width), x.dtype)
    if out.size:
        with config.one_share_for(out.size * spec.kernel[0] * spec.kernel[1]
                                          * config.WORK_PER_VALUE_READ):
            avg_pool2d_rows(_as_4d(spec, x), out, *spec.kernel, *spec.stride, *spec.padding,
                            bool(count_include_pad), 0 if override is None else override)
    return out.reshape(spec.output_shape)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Shapes as :func:`max_pool2d` (no dilation). Each window's sum is divided by
    ``divisor_override`` when given, else by the window's size within the padded input
    (``count_include_pad=True``) or by the number of input values in it.

    >>> import numpy as np, numbaconv
    >>> numbaconv.avg_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    """
    return _avg_pool("avg_pool2d", input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d``: input (N, C, L) or (C, L)."""
    return _avg_pool("avg_pool1d", input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


@differentiable
@on_gpu_arrays
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Inverse of :func:`max_pool2d`, as ``torch.nn.functional.max_unpool2d``.

    Writes each value of ``input`` at its index (flat per plane) in a zero output of
    (H - 1) * stride - 2 * padding + kernel_size per dimension, or ``output_size`` ((H, W)
    or the full shape; within stride of that default). ``indices`` must be integers of
    the input's shape, each inside the output plane.

    >>> import numpy as np, numbaconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> y, i = numbaconv.max_pool2d(x, 2, return_indices=True)
    >>> numbaconv.max_unpool2d(y, i, 2)[0, 0]
    array([[ 0.,  0.,  0.,  0.],
           [ 0.,  5.,  0.,  7.],
           [ 0.,  0.,  0.,  0.],
           [ 0., 13.,  0., 15.]])
    """
    from .cpu.pool import max_unpool2d_kernel

    op = "max_unpool2d"
    x = check_float_array(op, "input", input)
    index_array = np.asarray(indices)
    if index_array.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer array (int64, as max_pool2d returns "
                        f"them), got dtype {index_array.dtype}")
    spec = unpool_spec(op, x.shape, index_array.shape, kernel_size, stride, padding, output_size)
    out = np.zeros((spec.batch, spec.channels, spec.out_height, spec.out_width), x.dtype)
    if x.size:
        with config.one_share_for(x.size * config.WORK_PER_VALUE_READ):
            invalid = max_unpool2d_kernel(
                _as_4d(spec, x), _as_4d(spec, index_array.astype(np.int64, copy=False)), out)
        if invalid:
            raise ValueError(f"{op}: found {invalid} invalid max indices (each must be in "
                             f"[0, {spec.out_height * spec.out_width}) for an output plane of "
                             f"{spec.out_height}x{spec.out_width})")
    head = (spec.batch, spec.channels) if spec.batched else (spec.channels,)
    return out.reshape(head + (spec.out_height, spec.out_width))


def _adaptive_output_size(op: str, output_size, in_size: tuple) -> tuple:
    """torch's output_size: an int, or one entry per pooled axis (None keeps that axis)."""
    dims = len(in_size)
    if _is_int(output_size) or output_size is None:
        sizes = (output_size,) * dims
    else:
        try:
            sizes = tuple(output_size)
        except TypeError:
            raise TypeError(f"{op}: output_size must be an int or a tuple of {dims} ints, got "
                            f"{output_size!r}") from None
        if len(sizes) != dims:
            raise ValueError(f"{op}: output_size must be {dims}, got {output_size!r}")
    resolved = []
    for size, keep in zip(sizes, in_size):
        if size is None and dims > 1:
            size = keep
        if not _is_int(size):
            raise TypeError(f"{op}: output_size must be an int or a tuple of {dims} ints, "
                            f"got {output_size!r}")
        if size < 0:
            raise ValueError(f"{op}: elements of output_size must be greater than or equal "
                             f"to 0, got {output_size!r}")
        resolved.append(int(size))
    return tuple(resolved)


def _adaptive_pool(op, input, output_size, dims, take_max, return_indices=False):
    from .cpu.adaptive import adaptive_pool2d

    x = check_float_array(op, "input", input)
    if x.ndim not in (dims + 1, dims + 2):
        raise ValueError(f"{op}: expected a {dims + 1}-D or {dims + 2}-D input ((C, *) or "
                         f"(N, C, *) with {dims} pooled axes), got shape {x.shape}")
    if 0 in x.shape[-dims - 1:]:
        raise ValueError(f"{op}: expected input to have non-zero size for non-batch "
                         f"dimensions, got shape {x.shape}")
    size = _adaptive_output_size(op, output_size, x.shape[-dims:])
    x4 = np.ascontiguousarray(x.reshape((-1, x.shape[-dims - 1]) + (1,) * (2 - dims)
                                        + x.shape[-dims:]))
    out = np.empty(x4.shape[:2] + (1,) * (2 - dims) + size, x.dtype)
    indices = np.empty(out.shape if take_max else (0, 0, 0, 0), np.int64)
    if out.size:
        with config.one_share_for(x4.size * config.WORK_PER_VALUE_READ):
            adaptive_pool2d(x4, take_max, out, indices)
    shape = x.shape[:-dims] + size
    if return_indices:
        return out.reshape(shape), indices.reshape(shape)
    return out.reshape(shape)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def adaptive_avg_pool2d(input, output_size):
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``:
    input (N, C, H, W) or (C, H, W) -> (..., OH, OW), ``output_size`` an int or (OH, OW)
    (None keeps that axis). Output cell i of OH averages input rows [floor(i * H / OH),
    ceil((i + 1) * H / OH)), and likewise for columns: ``output_size=1`` is global
    average pooling.

    >>> import numpy as np, numbaconv
    >>> numbaconv.adaptive_avg_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 1)
    array([[[[7.5]]]])
    """
    return _adaptive_pool("adaptive_avg_pool2d", input, output_size, 2, False)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def adaptive_avg_pool1d(input, output_size):
    """1-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool1d``: input
    (N, C, L) or (C, L), ``output_size`` an int; see :func:`adaptive_avg_pool2d`."""
    return _adaptive_pool("adaptive_avg_pool1d", input, output_size, 1, False)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """2-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``: windows as
    :func:`adaptive_avg_pool2d`; NaN in a window gives NaN. With ``return_indices`` also
    the int64 position of each maximum (its first occurrence), flat within its (H, W)
    plane.

    >>> import numpy as np, numbaconv
    >>> numbaconv.adaptive_max_pool2d(np.arange(6.0).reshape(1, 2, 3), (1, 2),
    ...                               return_indices=True)
    (array([[[4., 5.]]]), array([[[4, 5]]]))
    """
    if not isinstance(return_indices, (bool, np.bool_)):
        raise TypeError(f"adaptive_max_pool2d: return_indices must be a bool, got "
                        f"{return_indices!r}")
    return _adaptive_pool("adaptive_max_pool2d", input, output_size, 2, True, return_indices)
