"""Transposed convolutions, computed by the convolution algorithms.

A transposed convolution with stride s, padding p, output padding q and dilation d is
the stride-1 convolution, with the same dilation, of the input with s - 1 zeros inserted
between neighbours, padded by d * (k - 1) - p before and that plus q after (cropped where
negative), with the kernel flipped and its in/out channel axes swapped per group. So it
runs on the same planner and kernels as :func:`numbaconv.conv2d` (Winograd included for
3x3 stride-1 layers).

For stride s > 1 the inserted zeros would cost s^2 times the arithmetic, so ``auto``
splits the output into its s_h * s_w phases instead (outputs o with o % s == r): each
phase only meets the taps k with k = (r + p) mod s (mod s), so it is a stride-1
convolution of the original input with that ceil(k / s)-sized sub-kernel, and the
phases together do exactly the transposed convolution's arithmetic (dilation 1; an
explicit ``algorithm=`` keeps the zero-inserted form, which every algorithm can run).
"""

from __future__ import annotations

import numpy as np

from . import devices, planner
from .spec import ConvSpec, check_float_operands, conv_spec, conv_transpose_spec


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


def swapped_weight(tspec, w: np.ndarray) -> np.ndarray:
    """(C_in, C_out/g, kH, kW) -> (C_out, C_in/g, kH, kW): in/out channels swapped per group."""
    g = tspec.groups
    cg, kg = tspec.in_channels // g, tspec.out_channels // g
    grouped = w.reshape(g, cg, kg, tspec.kernel_height, tspec.kernel_width)
    return grouped.transpose(0, 2, 1, 3, 4).reshape(tspec.out_channels, cg, tspec.kernel_height,
                                                    tspec.kernel_width)


def equivalent_weight(tspec, w: np.ndarray) -> np.ndarray:
    """The conv weight of the zero-inserted form: :func:`swapped_weight`, flipped."""
    return np.ascontiguousarray(swapped_weight(tspec, w)[:, :, ::-1, ::-1])


def phase_window(size, kernel, stride, padding, out_size, phase):
    """For the outputs o = phase + stride * m of one dimension (dilation 1):
    (taps, count, start, stop, pad_before, pad_after). ``taps`` are the kernel taps those
    outputs meet, last first; there are ``count`` of them; output m is
    sum_t x[lo + m + t] * w[taps[t]], which reads input positions lo .. lo + count +
    len(taps) - 2: x[start:stop] (that range clipped to the input) and zeros around it."""
    first = (phase + padding) % stride
    taps = list(range(first, kernel, stride))[::-1]
    count = len(range(phase, out_size, stride))
    lo = (phase + padding - first) // stride - (len(taps) - 1)
    hi = lo + count + len(taps) - 1
    start, stop = max(lo, 0), min(hi, size)
    return taps, count, start, stop, start - lo, hi - stop


def by_phases(tspec, x: np.ndarray, w: np.ndarray, bias, algorithm) -> np.ndarray:
    """The transposed convolution (N, C_out, H_out, W_out) as s_h * s_w stride-1
    convolutions of ``x`` with sub-kernels of ``w`` (dilation 1), scattered into place."""
    w_conv = swapped_weight(tspec, w)  # not flipped: phase_window lists the taps last first
    out = np.empty((tspec.batch, tspec.out_channels, tspec.out_height, tspec.out_width),
                   tspec.dtype)
    sh, sw = tspec.stride
    for ry in range(sh):
        taps_y, m_y, a_y, b_y, top, bottom = phase_window(
            tspec.in_height, tspec.kernel_height, sh, tspec.padding[0], tspec.out_height, ry)
        for rx in range(sw):
            taps_x, m_x, a_x, b_x, left, right = phase_window(
                tspec.in_width, tspec.kernel_width, sw, tspec.padding[1], tspec.out_width, rx)
            if m_y == 0 or m_x == 0:
                continue
            target = out[:, :, ry::sh, rx::sw]
            if not taps_y or not taps_x or a_y >= b_y or a_x >= b_x:  # reads only zeros
                target[...] = 0 if bias is None else bias[:, None, None]
                continue
            sub_w = np.ascontiguousarray(w_conv[:, :, taps_y][:, :, :, taps_x])
            spec = ConvSpec(
                op=tspec.op, batch=tspec.batch, in_channels=tspec.in_channels,
                in_height=b_y - a_y, in_width=b_x - a_x, out_channels=tspec.out_channels,
                kernel_height=len(taps_y), kernel_width=len(taps_x), stride_h=1, stride_w=1,
                dilation_h=1, dilation_w=1, pad_top=top, pad_bottom=bottom, pad_left=left,
                pad_right=right, groups=tspec.groups, padding_mode="zeros",
                has_bias=bias is not None, dtype=tspec.dtype, batched=True)
            chosen = planner.make_plan(spec, algorithm)
            result = planner.execute(chosen, x[:, :, a_y:b_y, a_x:b_x], sub_w, bias)
            target[...] = result.reshape(target.shape)  # (conv_transpose1d drops the height)
    return out


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
    if tspec.stride != (1, 1) and tspec.dilation == (1, 1) and algorithm in planner.SPECIAL:
        out = by_phases(tspec, x4, w4, None if b is None else b.astype(tspec.dtype), algorithm)
        return out.reshape(tspec.output_shape)
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
