"""Pooling and unpooling with PyTorch's semantics, for NumPy arrays (CPU).

``max_pool1d/2d``, ``avg_pool1d/2d`` and ``max_unpool2d`` take torch's arguments and
defaults (``stride=None`` means ``kernel_size``), check them as torch does
(:mod:`numbaconv.pool_spec`), and return new arrays; indices are int64, flat per
(n, c) plane of the input, as torch returns them.
"""

from __future__ import annotations

import numpy as np

from . import config
from .pool_spec import divisor, pool_spec, unpool_spec
from .spec import check_float_array


def _as_4d(spec, x):
    return np.ascontiguousarray(x.reshape(spec.batch, spec.channels, spec.in_height,
                                          spec.in_width))


def _max_pool(op, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    from .cpu.pool import max_pool2d_kernel, max_pool2d_rows

    x = check_float_array(op, "input", input)
    spec = pool_spec(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    out = np.empty((spec.batch, spec.channels, spec.out_height, spec.out_width), x.dtype)
    geometry = (*spec.kernel, *spec.stride, *spec.padding, *spec.dilation)
    if not return_indices:
        if out.size:
            with config.one_share_for(out.size * spec.kernel[0] * spec.kernel[1]
                                          * config.WORK_PER_VALUE_READ):
                max_pool2d_rows(_as_4d(spec, x), out, *geometry)
        return out.reshape(spec.output_shape)
    indices = np.empty(out.shape, np.int64)
    if out.size:
        with config.one_share_for(out.size * spec.kernel[0] * spec.kernel[1]
                                          * config.WORK_PER_VALUE_READ):
            max_pool2d_kernel(_as_4d(spec, x), out, indices, *geometry)
    return out.reshape(spec.output_shape), indices.reshape(spec.output_shape)


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
    out = np.empty((spec.batch, spec.channels, spec.out_height, spec.out_width), x.dtype)
    if out.size:
        with config.one_share_for(out.size * spec.kernel[0] * spec.kernel[1]
                                          * config.WORK_PER_VALUE_READ):
            avg_pool2d_rows(_as_4d(spec, x), out, *spec.kernel, *spec.stride, *spec.padding,
                            bool(count_include_pad), 0 if override is None else override)
    return out.reshape(spec.output_shape)


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


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d``: input (N, C, L) or (C, L)."""
    return _avg_pool("avg_pool1d", input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


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
