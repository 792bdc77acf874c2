"""Transposed convolutions.

A transposed convolution with stride s, padding p, output padding q and dilation d is
the stride-1 convolution, with the same dilation, of the input with s - 1 zeros inserted
between neighbours, padded by d * (k - 1) - p before and that plus q after (cropped where
negative), with the kernel flipped and its in/out channel axes swapped per group. An
explicitly named ``algorithm=`` runs it so, on the planner and kernels of
:func:`numbaconv.conv2d`; so does ``auto`` where that convolution runs Winograd (3x3,
stride 1: no zeros to insert, 4x fewer multiplies), for depthwise layers, whose
direct kernels are cheap per value read, and for grouped layers at stride 1.

Elsewhere the inserted zeros would cost s^2 times the arithmetic, so ``auto`` runs
:func:`by_matrix_product` instead: one matrix product of the weights by the input
pixels and a scatter-add of the products into the output, exactly the transposed
convolution's multiplies (``cpu.transposed_gemm``). It replaced a split of the output
into its s_h * s_w stride phases, each a stride-1 convolution with a sub-kernel, that did
the same arithmetic in s_h * s_w smaller convolutions and a copy into place: measured
(2 threads, AVX-512), as fast or faster everywhere, up to 3.6x (512 -> 256 channels, 3x3
stride 2 on 14x14: 12.2 ms by phases, 3.4 ms; torch 2.9 ms).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import array_pool, config, devices, planner
from .registry import direct_kernel
from .spec import check_float_operands, conv_spec, conv_transpose_spec
from ._dask_dispatch import on_dask_arrays
from .devices import on_gpu_arrays
from .tracing import differentiable


def zero_inserted_shape(tspec) -> tuple:
    """The shape of :func:`zero_inserted_input`'s result."""
    (top, bottom), (left, right) = tspec.equivalent_padding()
    up_h = (tspec.in_height - 1) * tspec.stride[0] + 1
    up_w = (tspec.in_width - 1) * tspec.stride[1] + 1
    return (tspec.batch, tspec.in_channels, up_h + top + bottom, up_w + left + right)


def zero_inserted_input(tspec, x: np.ndarray) -> np.ndarray:
    """x (N, C, H, W) with stride - 1 zeros between pixels, padded/cropped for the conv."""
    (top, bottom), (left, right) = tspec.equivalent_padding()
    sh, sw = tspec.stride
    if (sh, sw, top, bottom, left, right) == (1, 1, 0, 0, 0, 0):
        return x  # (a pointwise layer's: nothing to insert, nothing to pad)
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
    if tspec.kernel_height == tspec.kernel_width == 1:  # each group's matrix transposed
        g = tspec.groups
        cg, kg = tspec.in_channels // g, tspec.out_channels // g
        return _regrouped(w, g, cg, kg).reshape(tspec.out_channels, cg, 1, 1)
    return np.ascontiguousarray(swapped_weight(tspec, w)[:, :, ::-1, ::-1])


def matrix_product_bytes(tspec) -> int:
    """Memory :func:`by_matrix_product` allocates: the output, the regrouped weights, the
    channel-major input (a copy beyond one image) and each thread's contributions."""
    from .cpu.transposed_gemm import transposed_jobs

    threads = config.CPU_COUNT
    kg = tspec.out_channels // tspec.groups
    taps = tspec.kernel_height * tspec.kernel_width
    positions = tspec.batch * tspec.in_height * tspec.in_width
    if _runs_positions_major(tspec):  # the output, the transposed input, the products
        return np.dtype(tspec.dtype).itemsize * (
            tspec.batch * tspec.out_channels * tspec.out_height * tspec.out_width
            + positions * tspec.in_channels + positions * tspec.out_channels * taps)
    rows, cols = transposed_jobs(tspec.batch, tspec.in_height, tspec.in_width, kg,
                                 tspec.groups, taps, True, np.dtype(tspec.dtype).itemsize,
                                 threads)
    elements = (tspec.batch * tspec.out_channels * tspec.out_height * tspec.out_width
                + tspec.in_channels * kg * taps
                + (tspec.batch > 1) * tspec.batch * tspec.in_channels * tspec.in_height
                * tspec.in_width + threads * rows * taps * cols)
    return elements * np.dtype(tspec.dtype).itemsize


def by_matrix_product(tspec, x: np.ndarray, w: np.ndarray, bias) -> np.ndarray:
    """The transposed convolution (N, C_out, H_out, W_out) as one matrix product of the
    weights by the input pixels and a scatter-add of the products (``cpu.transposed_gemm``).

    Every stride, padding, dilation and group count; the multiplies are exactly those of
    the transposed convolution (the zero-inserted form would do stride^2 times more).
    Measured (2 threads, AVX-512): DCGAN's 512 -> 256, 4x4 stride 2 on 4x4 images at batch
    8, 18 ms by stride phases, 4.3 ms so (torch 3.2); U-Net's 1024 -> 512, 2x2 stride 2 on
    28x28, 36 ms by stride phases, 23 ms so (torch 20).
    """
    import numba

    from .cpu.transposed_gemm import fill_channels, transposed_gemm, transposed_jobs
    from .cpu.weight_cache import TRANSFORMED_WEIGHTS

    needed = matrix_product_bytes(tspec)
    if needed > config.memory_limit():
        raise config.memory_error(tspec.op, needed)
    g, kh, kw = tspec.groups, tspec.kernel_height, tspec.kernel_width
    cg, kg = tspec.in_channels // g, tspec.out_channels // g
    sh, sw = tspec.stride
    dh, dw = tspec.dilation
    ph, pw = tspec.padding
    positions = tspec.batch * tspec.in_height * tspec.in_width
    small = config.one_share_for(positions * tspec.in_channels * kg * kh * kw)
    if (tspec.in_height, tspec.in_width, g, tspec.dilation, tspec.padding,
            tspec.output_padding) == (1, 1, 1, (1, 1), (0, 0), (0, 0)):
        return _from_one_pixel(tspec, x, w, bias, small)
    if _runs_positions_major(tspec):
        return _positions_major(tspec, x, w, bias, small)
    with small:  # the weight cache compares the weights in a kernel too
        # the tag holds what the regrouping depends on besides the weights: the groups
        wt = TRANSFORMED_WEIGHTS.get(("transposed_gemm", g), np.ascontiguousarray(w),
                                     lambda: _regrouped(w, g, cg, kg * kh * kw))
    xt = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(tspec.in_channels, positions)
    out = array_pool.empty((tspec.batch, tspec.out_channels, tspec.out_height,
                            tspec.out_width), tspec.dtype)
    bias = np.zeros(tspec.out_channels, tspec.dtype) if bias is None else \
        np.ascontiguousarray(bias)
    overlapping = dh * (kh - 1) + 1 > sh or dw * (kw - 1) + 1 > sw
    block_rows, block_cols = transposed_jobs(
        tspec.batch, tspec.in_height, tspec.in_width, kg, g, kh * kw, overlapping,
        out.itemsize, numba.get_num_threads())
    with small:
        fill_channels(out, bias)
        transposed_gemm(xt, wt, out, tspec.in_height, tspec.in_width, g, kh, kw, sh, sw, ph,
                        pw, dh, dw, block_rows, block_cols)
    return out


#: Output channels per job of the positions-major scatter (``scatter_positions``).
SCATTER_CHANNEL_BLOCK = 32


def _runs_positions_major(tspec) -> bool:
    """Whether :func:`by_matrix_product` runs :func:`_positions_major` for ``tspec``."""
    return (tspec.groups == 1 and config.weights_are_fresh() and tspec.batch
            * tspec.in_height * tspec.in_width < tspec.in_channels * tspec.kernel_height
            * tspec.kernel_width)


def _positions_major(tspec, x, w, bias, small):
    """:func:`by_matrix_product` for ungrouped layers with fewer input pixels (over the
    batch) than weight rows, while weights are new on every call (a training step's input
    gradients of small maps): the product x^T (N * H * W, C_in) @ w (C_in, C_out * kH *
    kW), a row of contributions per pixel, multiplies the weights as they are, and only
    x, the smaller, is transposed; ``scatter_positions`` adds the rows where they land.
    (AVX2, 2 threads, batch 8: ResNet-18's 512 -> 512 3x3 input gradient on 2x2 maps,
    8.5 ms by the regrouped weights, most of it their transpose; 4.1 ms so.)"""
    import numba

    from .cpu.gemm import pointwise_conv2d, product_jobs
    from .cpu.layout import transpose_into
    from .cpu.transposed_gemm import scatter_positions
    from .epilogue import NO_EPILOGUE

    kh, kw = tspec.kernel_height, tspec.kernel_width
    plane = tspec.in_height * tspec.in_width
    positions, columns = tspec.batch * plane, tspec.out_channels * kh * kw
    pixels = np.empty((tspec.batch, plane, tspec.in_channels), tspec.dtype)
    contributions = np.empty((1, positions, columns), tspec.dtype)
    out = array_pool.empty((tspec.batch, tspec.out_channels, tspec.out_height,
                            tspec.out_width), tspec.dtype)
    bias = np.zeros(tspec.out_channels, tspec.dtype) if bias is None else \
        np.ascontiguousarray(bias)
    block_rows, block_cols = product_jobs(positions, columns, 1, out.itemsize,
                                          numba.get_num_threads())
    with small:
        transpose_into(np.ascontiguousarray(x).reshape(tspec.batch, tspec.in_channels, plane),
                       pixels)
        # (as pointwise_conv2d sees it: one "image", the weights, whose rows are the
        # input channels; the pixels are its "output channels", with no bias)
        pointwise_conv2d(np.ascontiguousarray(w).reshape(1, tspec.in_channels, columns),
                         pixels.reshape(positions, tspec.in_channels),
                         np.zeros(positions, tspec.dtype), contributions, 1, block_rows,
                         block_cols, NO_EPILOGUE)
        (sh, sw), (ph, pw), (dh, dw) = tspec.stride, tspec.padding, tspec.dilation
        scatter_positions(contributions[0], bias, out, tspec.in_height, tspec.in_width, kh,
                          kw, sh, sw, ph, pw, dh, dw, SCATTER_CHANNEL_BLOCK,
                          workers=tspec.batch * -(-tspec.out_channels // SCATTER_CHANNEL_BLOCK))
    return out


def _regrouped(w, groups, cg, columns):
    """w (C_in, C_out / g, kH, kW) as (g * C_out / g * kH * kW, C_in / g): each group's
    (C_in / g, columns) matrix transposed, in blocks (``layout.transpose_into``; NumPy's
    copy of the transposed view took 4-8 ms for 512 x 4608, every training step)."""
    from .cpu.layout import transpose_into

    out = np.empty((groups * columns, cg), w.dtype)
    transpose_into(np.ascontiguousarray(w).reshape(groups, cg, columns),
                   out.reshape(groups, columns, cg))
    return out


def _from_one_pixel(tspec, x, w, bias, small):
    """A 1x1 input, unpadded (a GAN generator's first layer, from its latent vector): the
    output (N, C_out, kH, kW) is the product of x (N, C_in) by w (C_in, C_out * kH * kW),
    computed in place, with no scatter (one contribution per output)."""
    import numba

    from .cpu.gemm import pointwise_conv2d, product_jobs
    from .epilogue import NO_EPILOGUE

    columns = tspec.out_channels * tspec.kernel_height * tspec.kernel_width
    out = array_pool.empty((tspec.batch, tspec.out_channels, tspec.out_height,
                            tspec.out_width), tspec.dtype)
    # As pointwise_conv2d sees it: one "image", the weights, whose rows are the channels;
    # the input rows are its "output channels" (no bias: that runs per output channel).
    block_rows, block_cols = product_jobs(tspec.batch, columns, 1, out.itemsize,
                                          numba.get_num_threads())
    with small:
        pointwise_conv2d(np.ascontiguousarray(w).reshape(1, tspec.in_channels, columns),
                         np.ascontiguousarray(x).reshape(tspec.batch, tspec.in_channels),
                         np.zeros(tspec.batch, tspec.dtype), out.reshape(1, tspec.batch, columns),
                         1, block_rows, block_cols, NO_EPILOGUE)
    if bias is not None:
        out += bias[:, None, None]
    return out


def _conv_transpose(op, input, weight, bias, stride, padding, output_padding, groups, dilation,
                    algorithm):
    # (arrays all on the GPU went to gpu_arrays; a mix of host and GPU is refused here)
    devices.placement(op, None, {"input": input, "weight": weight, "bias": bias})
    x, w, b, dtype = check_float_operands(op, input, weight, bias)
    tspec = conv_transpose_spec(op, x.shape, w.shape, None if b is None else b.shape, stride,
                                padding, output_padding, groups, dilation, dtype)
    if tspec.batch == 0:
        return np.zeros(tspec.output_shape, dtype=tspec.dtype)
    x4 = x.reshape(tspec.batch, tspec.in_channels, tspec.in_height, tspec.in_width)
    w4 = w.reshape(tspec.in_channels, tspec.out_channels // tspec.groups, tspec.kernel_height,
                   tspec.kernel_width).astype(tspec.dtype, copy=False)
    route = _route(tspec, algorithm)
    if route is None:
        out = by_matrix_product(tspec, x4, w4, None if b is None else b.astype(tspec.dtype))
        return out.reshape(tspec.output_shape)
    pads_in_place, run = route
    up = x4 if pads_in_place else zero_inserted_input(tspec, x4)
    out = run(up, equivalent_weight(tspec, w4), None if b is None else b.astype(tspec.dtype))
    return out.reshape(tspec.output_shape)


#: How each transposed convolution runs, by (spec, algorithm, fresh weights): None for
#: by_matrix_product, else (pads_in_place, the equivalent convolution's plan prepared as
#: a function of (x, weight, bias), the bytes it needs). A training step's input
#: gradients repeat the same few; deciding and planning again took 60 us of a 130 us
#: call (LeNet's 16 -> 6 5x5 at batch 1).
_ROUTES: dict = {}
_ROUTES_MAX = 256
_BY_MATRIX_PRODUCT = "by_matrix_product"  # (the entry of a route that is no convolution)


def _route(tspec, algorithm):
    """How ``tspec`` runs (see _ROUTES), decided once: None for by_matrix_product, else
    (pads_in_place, run); a plan that no longer fits the memory limit (it changed) is
    made again, to fall back or raise as planned."""
    cacheable = algorithm != "autotune" and not config.AUTOTUNE  # (autotune keeps its own)
    key = (tspec, algorithm, config.weights_are_fresh())
    kept = _ROUTES.get(key) if cacheable else None
    if kept is _BY_MATRIX_PRODUCT:
        return None
    if kept is not None and kept[2] <= config.memory_limit():
        return kept[:2]
    route = _decide_route(tspec, algorithm)
    if route is None:
        kept = _BY_MATRIX_PRODUCT
    else:
        pads_in_place, chosen = route
        if not (cacheable and chosen.fits):  # (execute raises an unfitting plan's error)
            return pads_in_place, _executes(chosen)
        kept = (pads_in_place, planner.prepare(chosen),
                planner.needed_bytes(chosen.spec, chosen.algorithm))
    if cacheable:
        if len(_ROUTES) >= _ROUTES_MAX:
            _ROUTES.clear()
        _ROUTES[key] = kept
    return None if kept is _BY_MATRIX_PRODUCT else kept[:2]


def _executes(plan):
    return lambda x, weight, bias: planner.execute(plan, x, weight, bias)


def _decide_route(tspec, algorithm):
    """None where ``tspec`` runs as by_matrix_product, else (pads_in_place, the plan of
    its equivalent convolution of the zero-inserted input)."""
    w_shape = (tspec.out_channels, tspec.in_channels // tspec.groups, tspec.kernel_height,
               tspec.kernel_width)
    spec = conv_spec("conv2d", zero_inserted_shape(tspec), w_shape,
                     (tspec.out_channels,) if tspec.has_bias else None, 1, 0, tspec.dilation,
                     tspec.groups, "zeros", tspec.dtype)
    (top, bottom), (left, right) = tspec.equivalent_padding()
    pads_in_place = tspec.stride == (1, 1) and min(top, bottom, left, right) >= 0
    if pads_in_place:  # nothing to insert: the convolution pads x itself, no padded copy
        spec = replace(spec, in_height=tspec.in_height, in_width=tspec.in_width,
                       pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right)
    # Depthwise layers (one channel in and out per group, as the input gradients of
    # MobileNet's and EfficientNet's depthwise convolutions are), and grouped ones at
    # stride 1, run as the convolution: the per-group products would be a few channels
    # deep, and the direct kernels read the inserted zeros faster (2 threads, AVX-512,
    # batch 8, 3x3: 1152 channels depthwise on 7x7 6.6 -> 1.5 ms, 576 on 14x14 stride 2
    # 3.9 -> 1.4; RegNet's 440 channels in groups of 8 on 7x7 2.0 -> 1.0, ResNeXt's 128
    # in groups of 4 on 56x56 11.0 -> 6.4; at stride 2, 512 in groups of 16 on 28x28,
    # 9.0 against 10.1, products stay).
    depthwise = spec.in_channels_per_group == spec.out_channels_per_group == 1
    # So do pointwise layers (1x1, stride 1, no padding: the input gradient of every 1x1
    # convolution at stride 1), a product with the transposed weights: the pointwise
    # kernels write each output once where the scatter-add of by_matrix_product adds
    # into it (AVX2, 2 threads, batch 8, the input gradient of 16 -> 64 on 54x54: 2.1-2.4
    # -> 1.8 ms, torch 1.0).
    # (1x1 images excepted: by_matrix_product multiplies those by the weights as they are)
    pointwise = spec.is_pointwise and tspec.stride == (1, 1) and \
        (tspec.in_height, tspec.in_width) != (1, 1)
    # And so do the stride-1 ones whose convolution runs as direct's register tiles
    # (channels enough for whole tiles; Winograd, where it pays, runs as a convolution
    # anyway): the tiles read the padding's zeros faster than by_matrix_product writes
    # and scatter-adds a row of contributions per pixel (AVX2, 2 threads, input gradients,
    # ms: LeNet's 6 -> 16 5x5 at batch 64 1.73 -> 1.14, torch 0.79; batch 8, 32 -> 16 5x5
    # on 28x28 4.4 -> 1.9, 40 -> 80 5x5 on 28x28 12.4 -> 11.3). Where auto picks gemm for
    # the convolution (AlexNet's 64 -> 192 5x5 on 27x27) the product stays, though the
    # tiles forced there measured 36.5 against 44.7.
    tiled = tspec.stride == (1, 1) and tspec.dilation == (1, 1) and \
        planner.auto_rule(spec)[0] == "direct" and direct_kernel(spec) == "tiled"
    as_convolution = depthwise or pointwise or tiled or \
        (spec.groups > 1 and tspec.stride == (1, 1))
    if algorithm in planner.SPECIAL and not as_convolution and (
            tspec.stride != (1, 1) or not planner.winograd_pays(spec, planner.REGISTRY)
            or not planner.fresh_transform_pays(spec)):
        return None
    return pads_in_place, planner.make_plan(spec, algorithm)


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


@differentiable
@on_dask_arrays
@on_gpu_arrays
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    return _conv_transpose("conv_transpose2d", input, weight, bias, stride, padding,
                           output_padding, groups, dilation, algorithm)


@differentiable
@on_dask_arrays
@on_gpu_arrays
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
