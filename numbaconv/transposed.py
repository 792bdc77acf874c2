"""Transposed convolutions, computed by the convolution algorithms.

A transposed convolution with stride s, padding p, output padding q and dilation d is
the stride-1 convolution, with the same dilation, of the input with s - 1 zeros inserted
between neighbours, padded by d * (k - 1) - p before and that plus q after (cropped where
negative), with the kernel flipped and its in/out channel axes swapped per group. So it
runs on the same planner and kernels as :func:`numbaconv.conv2d` (Winograd included for
3x3 stride-1 layers); for stride s the inserted zeros cost s^2 times the arithmetic.
"""

from __future__ import annotations

import numpy as np

from . import devices, planner
from .spec import check_float_operands, conv_spec, conv_transpose_spec


def zero_inserted_input(tspec, x: np.ndarray) -> np.ndarray:
    """x (N, C, H, W) with stride - 1 zeros between pixels, padded/cropped for the conv."""
    (top, bottom), (left, right) = tspec.equivalent_padding()
    sh, sw = tspec.stride
    up_h, up_w = (tspec.in_height - 1) * sh + 1, (tspec.in_width - 1) * sw + 1
    full = np.zeros((tspec.batch, tspec.in_channels, up_h + max(top, 0) + max(bottom, 0),
                     up_w + max(left, 0) + max(right, 0)), dtype=tspec.dtype)
    full[:, :, max(top, 0):max(top, 0) + up_h:sh, max(left, 0):max(left, 0) + up_w:sw] = x
    return full[:, :, max(-top, 0):full.shape[2] - max(-bottom, 0),
                max(-left, 0):full.shape[3] - max(-right, 0)]


def equivalent_weight(tspec, w: np.ndarray) -> np.ndarray:
    """(C_in, C_out/g, kH, kW) -> the conv weight (C_out, C_in/g, kH, kW), flipped."""
    g = tspec.groups
    cg, kg = tspec.in_channels // g, tspec.out_channels // g
    grouped = w.reshape(g, cg, kg, tspec.kernel_height, tspec.kernel_width)
    swapped = grouped.transpose(0, 2, 1, 3, 4)[:, :, :, ::-1, ::-1]
    return np.ascontiguousarray(swapped).reshape(tspec.out_channels, cg, tspec.kernel_height,
                                                 tspec.kernel_width)


def _conv_transpose(op, input, weight, bias, stride, padding, output_padding, groups, dilation,
                    algorithm):
    if devices.placement(op, None, {"input": input, "weight": weight, "bias": bias}) != "cpu":
        raise NotImplementedError(f"{op} runs on the CPU only so far; copy the arrays to the "
                                  f"host (device_array.copy_to_host()) first")
    x, w, b, dtype = check_float_operands(op, input, weight, bias)
    tspec = conv_transpose_spec(op, x.shape, w.shape, None if b is None else b.shape, stride,
                                padding, output_padding, groups, dilation, dtype)
    if tspec.batch == 0:
        return np.zeros(tspec.output_shape, dtype=tspec.dtype)
    x4 = x.reshape(tspec.batch, tspec.in_channels, tspec.in_height, tspec.in_width)
    w4 = w.reshape(tspec.in_channels, tspec.out_channels // tspec.groups, tspec.kernel_height,
                   tspec.kernel_width).astype(tspec.dtype, copy=False)
    up = zero_inserted_input(tspec, x4)
    w_conv = equivalent_weight(tspec, w4)
    spec = conv_spec("conv2d", up.shape, w_conv.shape, None if b is None else b.shape, 1, 0,
                     tspec.dilation, tspec.groups, "zeros", tspec.dtype)
    chosen = planner.make_plan(spec, algorithm)
    out = planner.execute(chosen, up, w_conv, None if b is None else b.astype(tspec.dtype))
    return out.reshape(tspec.output_shape)


_DOC = """Transposed {n}-D convolution, exactly as ``torch.nn.functional.conv_transpose{n}d``.

    Parameters
    ----------
    input : array_like, (N, C_in, {sp}) or unbatched (C_in, {sp})
    weight : array_like, (C_in, C_out / groups, {k})
    bias : array_like, (C_out,), optional
    stride, padding, output_padding, dilation : int or tuple of {n} ints
        ``output_padding`` (added to one side of the output) must be smaller than the
        stride or the dilation of its dimension.
    groups : int
    algorithm : str, keyword only
        The convolution algorithm that computes it (see :func:`numbaconv.conv2d`).

    Returns
    -------
    numpy.ndarray, (N, C_out, {out}) or unbatched, with
        {out_1} = ({sp_1} - 1) * stride - 2 * padding + dilation * ({k_1} - 1)
        + output_padding + 1 (per dimension).

    Examples
    --------
    >>> import numpy as np, numbaconv
    >>> x = np.ones((1, 1, {example_in}), np.float32)
    >>> numbaconv.conv_transpose{n}d(x, np.ones((1, 1, {example_k}), np.float32), stride=2).shape
    {example_out}
"""


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    return _conv_transpose("conv_transpose2d", input, weight, bias, stride, padding,
                           output_padding, groups, dilation, algorithm)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    return _conv_transpose("conv_transpose1d", input, weight, bias, stride, padding,
                           output_padding, groups, dilation, algorithm)


conv_transpose2d.__doc__ = _DOC.format(n=2, sp="H, W", k="kH, kW", out="H_out, W_out",
                                       out_1="H_out", sp_1="H", k_1="kH", example_in="2, 2",
                                       example_k="3, 3", example_out="(1, 1, 5, 5)")
conv_transpose1d.__doc__ = _DOC.format(n=1, sp="L", k="kL", out="L_out", out_1="L_out",
                                       sp_1="L", k_1="kL", example_in="4", example_k="3",
                                       example_out="(1, 1, 9)")
