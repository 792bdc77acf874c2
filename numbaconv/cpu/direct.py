"""Direct convolution on the CPU: the kernels behind ``algorithm="direct"``.

``run`` picks one by the layer's shape:

* ``tiled_conv2d`` (>= 4 output channels per group): an implicit GEMM. The input is zero
  padded and split by stride phase (``layout.pad_phase_split``), so that for a fixed
  kernel tap the inputs of a block of output rows form one contiguous run on a grid
  ``Wq`` wide; the microkernel's ``gather_tile`` keeps 6 output channels by a panel of
  positions in registers over all taps (the grid columns past the output width are
  computed and dropped).
* ``direct_conv2d`` (1-3 output channels per group): the same phase-split runs, one
  output channel per job, accumulated in an L1-sized buffer by long loops that LLVM
  vectorises, taps fused (all nine for 3x3 kernels).
* depthwise layers, straight from the NCHW input: ``depthwise_channels_last`` on small
  images (vectorised across channels), the 3x3 stencil kernels
  (``depthwise3x3_conv2d`` row by row on wide images, ``depthwise3x3_stacked`` on the
  images of a channel stacked in one padded buffer), and ``depthwise_conv2d``, which
  pads the few rows each job reads, for everything else.
"""

import functools
import math

import numba
import numpy as np
from numba import njit

from ..isa import NV, VECTOR_BYTES
from ..registry import (direct_block_rows, direct_kernel, direct_tile_rows,
                        weight_grad_reads_phase_split)
from . import step_columns
from ..epilogue import NO_EPILOGUE
from .dispatch import parallel_kernel, share
from .epilogue import biased_row, finish_block, finish_silu, new_scratch
from .layout import (copy1d, copy2d, new_output, pad_phase_split, phase_split_input,
                     phase_split_plane, phase_split_shape)
from .microkernel import gather_tile, gather_tile4, transpose_tile
from .workspace import scratch
from .stencil import channel_taps1, channel_taps4, stencil3x3_span


@njit(inline="always")
def _tap(planes, r, s, oh0, dilation_h, dilation_w, length):
    """The ``length`` contiguous inputs tap (r, s) reads for outputs from row oh0, column 0.

    Returned as a slice so that the kernels index it with their loop counter alone:
    Numba then knows the index is not negative and LLVM can vectorise the loop.
    """
    stride_h, stride_w, _, cols_q = planes.shape
    rr = r * dilation_h
    cc = s * dilation_w
    flat = planes[rr % stride_h, cc % stride_w].reshape(-1)
    start = (oh0 + rr // stride_h) * cols_q + cc // stride_w
    return flat[start:start + length]


@njit(inline="always")
def _accumulate(planes, w, acc, oh0, dilation_h, dilation_w):
    """acc[i] += sum over taps (r, s) of w[r, s] * (input tap (r, s) reads for output i).

    ``planes``: one input channel, phase split (sh, sw, Hq, Wq); output i is row
    oh0 + i // Wq, column i % Wq of the block. Taps are fused so that each pass over
    ``acc`` does several multiply-adds per load and store of it: all nine for 3x3
    kernels, otherwise four at a time (then one at a time for the rest).
    """
    kernel_h, kernel_w = w.shape
    length = acc.size
    if kernel_h == 3 and kernel_w == 3:
        f0 = _tap(planes, 0, 0, oh0, dilation_h, dilation_w, length)
        f1 = _tap(planes, 0, 1, oh0, dilation_h, dilation_w, length)
        f2 = _tap(planes, 0, 2, oh0, dilation_h, dilation_w, length)
        f3 = _tap(planes, 1, 0, oh0, dilation_h, dilation_w, length)
        f4 = _tap(planes, 1, 1, oh0, dilation_h, dilation_w, length)
        f5 = _tap(planes, 1, 2, oh0, dilation_h, dilation_w, length)
        f6 = _tap(planes, 2, 0, oh0, dilation_h, dilation_w, length)
        f7 = _tap(planes, 2, 1, oh0, dilation_h, dilation_w, length)
        f8 = _tap(planes, 2, 2, oh0, dilation_h, dilation_w, length)
        w0, w1, w2 = w[0, 0], w[0, 1], w[0, 2]
        w3, w4, w5 = w[1, 0], w[1, 1], w[1, 2]
        w6, w7, w8 = w[2, 0], w[2, 1], w[2, 2]
        for i in range(length):
            acc[i] += (w0 * f0[i] + w1 * f1[i] + w2 * f2[i]
                       + w3 * f3[i] + w4 * f4[i] + w5 * f5[i]
                       + w6 * f6[i] + w7 * f7[i] + w8 * f8[i])
        return
    taps = kernel_h * kernel_w
    t = 0
    while t + 4 <= taps:
        r0, s0 = divmod(t, kernel_w)
        r1, s1 = divmod(t + 1, kernel_w)
        r2, s2 = divmod(t + 2, kernel_w)
        r3, s3 = divmod(t + 3, kernel_w)
        f0 = _tap(planes, r0, s0, oh0, dilation_h, dilation_w, length)
        f1 = _tap(planes, r1, s1, oh0, dilation_h, dilation_w, length)
        f2 = _tap(planes, r2, s2, oh0, dilation_h, dilation_w, length)
        f3 = _tap(planes, r3, s3, oh0, dilation_h, dilation_w, length)
        w0, w1, w2, w3 = w[r0, s0], w[r1, s1], w[r2, s2], w[r3, s3]
        for i in range(length):
            acc[i] += w0 * f0[i] + w1 * f1[i] + w2 * f2[i] + w3 * f3[i]
        t += 4
    while t < taps:
        r0, s0 = divmod(t, kernel_w)
        f0 = _tap(planes, r0, s0, oh0, dilation_h, dilation_w, length)
        w0 = w[r0, s0]
        for i in range(length):
            acc[i] += w0 * f0[i]
        t += 1


@njit(inline="always")
def _row_block_job(job, blocks, per_image, block_rows, out_h):
    """(image, index within the image, first row, rows) of a job numbered over
    (image, ``per_image`` channels or groups, ``blocks`` blocks of output rows)."""
    oh0 = (job % blocks) * block_rows
    return (job // (blocks * per_image), (job // blocks) % per_image, oh0,
            min(block_rows, out_h - oh0))


@njit(inline="always")
def _store_rows(acc, cols_q, bias_k, dst_plane, oh0, nrows):
    """dst_plane[oh0 + i, :] = acc row i (the first OW of its Wq columns) + bias."""
    out_w = dst_plane.shape[1]
    for i in range(nrows):
        # (a slice indexed by the loop counter alone: LLVM then vectorises the copy)
        src = acc[i * cols_q:i * cols_q + out_w]
        dst = dst_plane[oh0 + i]
        for j in range(out_w):
            dst[j] = src[j] + bias_k


@njit(inline="always")
def _store_finished_rows(acc, cols_q, bias_k, dst_plane, oh0, nrows, post, scaled, bits):
    """:func:`_store_rows`, then the epilogue ``post`` (``cpu.epilogue``) on each row while
    it is in L1. The kernels call one or the other on ``post is None``, in their own body:
    Numba then drops the other branch before inlining, so a plain convolution compiles
    none of the epilogue's code (inlined everywhere, it doubled the direct kernels' first
    compile, 7.5 -> 18.6 s)."""
    out_w = dst_plane.shape[1]
    for i in range(nrows):
        src = acc[i * cols_q:i * cols_q + out_w]
        biased_row(dst_plane[oh0 + i], src, bias_k, post)
        finish_silu(dst_plane, oh0 + i, oh0 + i + 1, 0, out_w, post, scaled, bits)


@parallel_kernel
def direct_conv2d(xph, weight, bias, out, dilation_h, dilation_w, groups, block_rows, post,
                  worker, workers):
    """out[n, k] = bias[k] + sum_{c, r, s} weight[k, c, r, s] * padded[n, g*Cg + c, ...].

    xph: (N, C, sh, sw, Hq, Wq) from ``pad_phase_split``; weight: (K, C/groups, kH, kW);
    bias: (K,); out: (N, K, OH, OW), written in full. One job per (image, output
    channel, block of output rows).
    """
    n_batch, _, _, _, _, cols_q = xph.shape
    out_channels, cin = weight.shape[0], weight.shape[1]
    out_h, out_w = out.shape[2], out.shape[3]
    kg = out_channels // groups
    blocks = -(-out_h // block_rows)
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(xph.itemsize)
    my_first, my_stop = share(worker, workers, n_batch * out_channels * blocks)
    for job in range(my_first, my_stop):
        n, k, oh0, nrows = _row_block_job(job, blocks, out_channels, block_rows, out_h)
        acc = np.zeros((nrows - 1) * cols_q + out_w, dtype=out.dtype)
        c0 = (k // kg) * cin
        for c in range(cin):
            _accumulate(xph[n, c0 + c], weight[k, c], acc, oh0, dilation_h, dilation_w)
        if post is None:
            _store_rows(acc, cols_q, bias[k], out[n, k], oh0, nrows)
        else:
            _store_finished_rows(acc, cols_q, bias[k], out[n, k], oh0, nrows, post, scaled,
                                 bits)
    return 0


@parallel_kernel
def depthwise_conv2d(x, weight, bias, out, pad_top, pad_left, stride_h, stride_w, dilation_h,
                     dilation_w, cols_q, block_rows, post, worker, workers):
    """The direct kernel for depthwise layers (one input channel per output channel).

    Each input plane feeds one output channel only, so instead of a padded copy of the
    whole input (a full extra pass over memory) every job pads and phase-splits just
    the input rows its block of output rows reads, into a buffer that stays in cache.
    x: (N, C, H, W); weight (C, 1, kH, kW); out (N, C, OH, OW).
    """
    n_batch, channels = x.shape[0], x.shape[1]
    kernel_h = weight.shape[2]
    out_h, out_w = out.shape[2], out.shape[3]
    blocks = -(-out_h // block_rows)
    # Phase rows a block reads: its own rows plus the kernel's reach below them.
    rows_q = block_rows + ((kernel_h - 1) * dilation_h) // stride_h + 1
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(x.itemsize)
    my_first, my_stop = share(worker, workers, n_batch * channels * blocks)
    for job in range(my_first, my_stop):
        oh0 = (job % blocks) * block_rows
        c = (job // blocks) % channels
        n = job // (blocks * channels)
        nrows = min(block_rows, out_h - oh0)
        local = np.empty((stride_h, stride_w, rows_q, cols_q), dtype=x.dtype)
        phase_split_plane(x[n, c], oh0, pad_top, pad_left, local)
        acc = np.zeros((nrows - 1) * cols_q + out_w, dtype=out.dtype)
        _accumulate(local, weight[c, 0], acc, 0, dilation_h, dilation_w)
        if post is None:
            _store_rows(acc, cols_q, bias[c], out[n, c], oh0, nrows)
        else:
            _store_finished_rows(acc, cols_q, bias[c], out[n, c], oh0, nrows, post, scaled,
                                 bits)
    return 0


@njit(inline="always")
def _depthwise3x3_row(dst, rows, weights, count, lo, n_interior, pad_left, width):
    """dst[ow] += sum over the ``count`` input rows and 3 taps, for one output row.

    rows / weights: up to three (input row, its 3 taps) pairs; columns lo.. lo+n_interior
    read no padding and run as one long fused loop, the few at the edges check each tap.
    """
    x0, x1, x2 = rows
    w0, w1, w2 = weights
    start = lo - pad_left
    if count == 3:
        a0, a1, a2 = x0[start:start + n_interior], x0[start + 1:start + 1 + n_interior], \
            x0[start + 2:start + 2 + n_interior]
        b0, b1, b2 = x1[start:start + n_interior], x1[start + 1:start + 1 + n_interior], \
            x1[start + 2:start + 2 + n_interior]
        c0, c1, c2 = x2[start:start + n_interior], x2[start + 1:start + 1 + n_interior], \
            x2[start + 2:start + 2 + n_interior]
        d = dst[lo:lo + n_interior]
        for j in range(n_interior):
            d[j] += (w0[0] * a0[j] + w0[1] * a1[j] + w0[2] * a2[j]
                     + w1[0] * b0[j] + w1[1] * b1[j] + w1[2] * b2[j]
                     + w2[0] * c0[j] + w2[1] * c1[j] + w2[2] * c2[j])
    else:
        for t in range(count):
            xr = x0 if t == 0 else (x1 if t == 1 else x2)
            wr = w0 if t == 0 else (w1 if t == 1 else w2)
            a0, a1, a2 = xr[start:start + n_interior], xr[start + 1:start + 1 + n_interior], \
                xr[start + 2:start + 2 + n_interior]
            d = dst[lo:lo + n_interior]
            for j in range(n_interior):
                d[j] += wr[0] * a0[j] + wr[1] * a1[j] + wr[2] * a2[j]
    out_w = dst.shape[0]
    for edge in range(out_w - n_interior):  # the columns whose taps may be padding
        ow = edge if edge < lo else edge + n_interior
        total = dst[ow]
        for t in range(count):
            xr = x0 if t == 0 else (x1 if t == 1 else x2)
            wr = w0 if t == 0 else (w1 if t == 1 else w2)
            for s in range(3):
                iw = ow + s - pad_left
                if 0 <= iw < width:
                    total += wr[s] * xr[iw]
        dst[ow] = total


@njit(inline="always")
def _depthwise3x3_flat_rows(xp, w, bias, op, pad_top, row_lo, row_hi):
    """Output rows [row_lo, row_hi) of one plane whose width equals the input's (padding 1
    left and right), when all three input rows of each are real.

    Output and input rows then have the same stride, so tap (r, s) of output p (a flat
    index over the plane) is input p + (r - pad_top) * W + s - 1: the rows run as one
    long loop, set up once per plane rather than once per row (the per-row setup cost
    as much as the row's arithmetic at 112 columns). The vector part (.stencil) zeroes
    the taps that the formula takes from the neighbouring row in the first and last
    columns; the few outputs after it, and the span's two ends, are done by the scalar
    loop and recomputed where they fall in those columns.
    xp: (H, W) input plane, C-contiguous; w: (3, 3); op: (OH, W) output plane.
    """
    width = xp.shape[1]
    xf = xp.reshape(-1)
    of = op.reshape(-1)
    lo = row_lo * width + 1  # the span leaves out the first row's first column and the
    count = (row_hi - row_lo) * width - 2  # last row's last: their taps leave the plane
    x0 = lo - pad_top * width - 1  # input of tap (0, 0) for output lo
    # The bulk in vector steps; the rest (fewer than two vectors, as the last step must
    # not read past the plane) by the loop below.
    lanes = VECTOR_BYTES // xp.itemsize
    n_vectors = max(0, (count + 2) // lanes - 1) if width >= lanes else 0
    if n_vectors > 0:  # (it reads its first vectors before the loop)
        stencil3x3_span(xf, x0, width, w, bias, of, lo, 1, True, n_vectors)
    done = n_vectors * lanes
    # The taps as scalars: read from an array inside the loop, LLVM would have to reload
    # them after every store (it cannot tell that ``of`` and ``w`` do not overlap).
    w00, w01, w02 = w[0, 0], w[0, 1], w[0, 2]
    w10, w11, w12 = w[1, 0], w[1, 1], w[1, 2]
    w20, w21, w22 = w[2, 0], w[2, 1], w[2, 2]
    for p in range(lo + done, lo + count):
        t = p - lo + x0  # input of tap (0, 0)
        of[p] = ((bias + w00 * xf[t] + w01 * xf[t + 1] + w02 * xf[t + 2])
                 + (w10 * xf[t + width] + w11 * xf[t + width + 1] + w12 * xf[t + width + 2])
                 + (w20 * xf[t + 2 * width] + w21 * xf[t + 2 * width + 1]
                    + w22 * xf[t + 2 * width + 2]))
    last = width - 1
    first_scalar_row = (lo + done) // width
    for oh in range(row_lo, row_hi):
        if row_lo < oh < first_scalar_row:
            continue  # the vector part got both its edge columns right
        x0, x1, x2 = xp[oh - pad_top], xp[oh - pad_top + 1], xp[oh - pad_top + 2]
        op[oh, 0] = ((bias + w01 * x0[0] + w02 * x0[1]) + (w11 * x1[0] + w12 * x1[1])
                     + (w21 * x2[0] + w22 * x2[1]))
        op[oh, last] = ((bias + w00 * x0[last - 1] + w01 * x0[last])
                        + (w10 * x1[last - 1] + w11 * x1[last])
                        + (w20 * x2[last - 1] + w21 * x2[last]))


@parallel_kernel
def depthwise3x3_conv2d(x, weight, bias, out, pad_top, pad_left, post, worker, workers):
    """Depthwise 3x3, stride 1, dilation 1: the layer of MobileNet-style networks.

    Memory-bound (9 multiply-adds per output): one job per (image, channel) plane reads
    the input straight from the NCHW array with no padded copy and writes each output
    once. With padding 1 left and right (the usual case) the rows that read no padding
    run as one flat loop (``_depthwise3x3_flat_rows``), and each row that does reads a
    copy of its three input rows with zeros for the padded ones. Other paddings go one
    row at a time, skipping the taps that fall in the padding.
    x: (N, C, H, W), C-contiguous; weight (C, 1, 3, 3); out (N, C, OH, OW).
    """
    n_batch, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    flat = pad_left == 1 and out_w == width and width >= 3
    row_lo = min(pad_top, out_h)  # the rows whose three input rows are all real
    row_hi = max(row_lo, min(out_h, height + pad_top - 2))
    lo = min(pad_left, out_w)  # first column whose three taps are all inside the row
    n_interior = max(0, min(out_w, width + pad_left - 2) - lo)
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(x.itemsize)
    my_first, my_stop = share(worker, workers, n_batch * channels)
    for job in range(my_first, my_stop):
        c = job % channels
        n = job // channels
        w = weight[c, 0]
        xp, op = x[n, c], out[n, c]
        if flat:
            if row_hi > row_lo:
                _depthwise3x3_flat_rows(xp, w, bias[c], op, pad_top, row_lo, row_hi)
            rows = np.empty((3, width), dtype=x.dtype)
            for oh in range(out_h):
                if row_lo <= oh < row_hi:
                    continue
                for r in range(3):
                    if 0 <= oh + r - pad_top < height:
                        copy1d(rows[r], xp[oh + r - pad_top])
                    else:
                        rows[r] = 0.0
                _depthwise3x3_flat_rows(rows, w, bias[c], op[oh:oh + 1], 0, 0, 1)
        else:
            for oh in range(out_h):
                dst = op[oh]
                dst[:] = bias[c]
                first = max(0, pad_top - oh)  # taps r in [first, last) read real rows
                last = min(3, height + pad_top - oh)
                count = max(0, last - first)
                if count == 0:
                    continue
                ih = oh + first - pad_top
                rows3 = (xp[ih], xp[ih + min(1, count - 1)], xp[ih + min(2, count - 1)])
                weights = (w[first], w[min(first + 1, 2)], w[min(first + 2, 2)])
                _depthwise3x3_row(dst, rows3, weights, count, lo, n_interior, pad_left, width)
        if post is not None:  # (the plane is still in cache)
            finish_block(op, 0, out_h, 0, out_w, post, scaled, bits)
    return 0


@parallel_kernel
def depthwise3x3_stacked(x, weight, bias, out, pad_top, pad_left, grid_h, grid_w, stride_h,
                         stride_w, work, post, worker, workers):
    """Depthwise 3x3, dilation 1: small images (MobileNet's 28x28 to 7x7) and strides.

    Per plane, the work is too little for the row-by-row kernel (a 7x7 plane has no
    full vector row), and strided rows cannot use its flat stencil. Here one job per
    channel copies that channel of every image into a zero-padded buffer, the images
    stacked one above the other (``grid_h`` x ``grid_w``: the padded image), runs one
    stencil span over the whole stack (one weight set: same channel) at stride 1, and
    picks the outputs out of that grid at the layer's strides (a stride-2 layer computes
    4x the outputs it keeps: cheap vector work against the per-element loops it
    replaces). The buffers stay in L1/L2.
    x: (N, C, H, W), C-contiguous; weight (C, 1, 3, 3); out (N, C, OH, OW).
    """
    n_batch, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    lanes = VECTOR_BYTES // x.itemsize
    count = (n_batch * grid_h - 2) * grid_w  # grid positions with three rows below them
    n_vectors = -(-count // lanes)
    # The last vector steps read up to one vector and two rows past ``count``.
    size = n_batch * grid_h * grid_w + 2 * lanes + 2 * grid_w
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(x.itemsize)
    my_first, my_stop = share(worker, workers, channels)
    padded = work[worker, :size]  # (reused from call to call: see depthwise_channels_last)
    grid = work[worker, size:size + n_vectors * lanes]
    if my_stop > my_first:
        padded[:] = 0.0  # the padding; each channel writes only the inside
    for c in range(my_first, my_stop):
        for n in range(n_batch):
            for i in range(height):
                start = (n * grid_h + pad_top + i) * grid_w + pad_left
                copy1d(padded[start:start + width], x[n, c, i])
        stencil3x3_span(padded, 0, grid_w, weight[c, 0], bias[c], grid, 0, 0, False,
                        n_vectors)
        for n in range(n_batch):
            for oh in range(out_h):
                start = (n * grid_h + oh * stride_h) * grid_w
                copy1d(out[n, c, oh], grid[start:start + stride_w * (out_w - 1) + 1:stride_w])
            if post is not None:
                finish_block(out[n, c], 0, out_h, 0, out_w, post, scaled, bits)
    return 0


@parallel_kernel
def depthwise_channels_last(x, weight, bias, out, pad_top, pad_left, grid_h, grid_w,
                            stride_h, stride_w, dilation_h, dilation_w, work, post, worker,
                            workers):
    """Depthwise convolution vectorised across channels, for small images.

    On a 7x7 or 14x14 plane there is little to vectorise along a row; across channels
    there is plenty (MobileNet's small layers have 256-1024). Each job takes LANES
    channels (a vector's worth) of every image: per image it turns them channels-last
    with in-register block transposes (``transpose_tile``) into a zero-padded grid
    (``grid_h`` x ``grid_w`` positions of LANES values), computes each output as one
    vector (``channel_taps``: a multiply-add per tap) and turns the result back. Any
    kernel size, stride and dilation, any channel count (a last block of fewer channels
    than a vector moves one value at a time, its other lanes zero).
    x: (N, C, H, W), C-contiguous; weight (C, 1, kH, kW); out (N, C, OH, OW); work: a
    row per share of LANES * (H * W + grid_h * grid_w + OH * OW) elements, the share's
    buffers, reused from call to call (fresh ones per job were fresh pages: 3-4 ms a call
    on MobileNetV2's 96-channel 112x112 stride-2 layer, against 0.5 ms).
    """
    n_batch, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    kernel_h, kernel_w = weight.shape[2], weight.shape[3]
    n_taps = kernel_h * kernel_w
    lanes = VECTOR_BYTES // x.itemsize
    plane, out_plane = height * width, out_h * out_w
    xf = x.reshape(-1)
    of = out.reshape(-1)
    offsets = np.empty(n_taps, dtype=np.int64)  # of each tap from its output's first
    for t in range(n_taps):
        offsets[t] = ((t // kernel_w) * dilation_h * grid_w + (t % kernel_w) * dilation_w) * lanes
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(x.itemsize)
    my_first, my_stop = share(worker, workers, -(-channels // lanes))
    mine = work[worker]
    src = mine[:plane * lanes].reshape(plane, lanes)
    flat = mine[plane * lanes:(plane + grid_h * grid_w) * lanes]
    grid = flat.reshape(grid_h * grid_w, lanes)
    dst = mine[(plane + grid_h * grid_w) * lanes:
               (plane + grid_h * grid_w + out_plane) * lanes].reshape(out_plane, lanes)
    if my_stop > my_first:
        flat[:] = 0.0  # the padding; jobs write only the inside
    for block in range(my_first, my_stop):
        c0 = block * lanes
        used = min(lanes, channels - c0)  # a last block of fewer channels: lanes left zero
        taps = np.zeros((n_taps, lanes), dtype=x.dtype)
        shift = np.zeros(lanes, dtype=x.dtype)
        for lane in range(used):
            for t in range(n_taps):
                taps[t, lane] = weight[c0 + lane, 0, t // kernel_w, t % kernel_w]
            shift[lane] = bias[c0 + lane]
        # (a last block's unused lanes carry whatever the buffers held: computed, not stored)
        # whole blocks of positions move as in-register transposes (all lanes real)
        full_in = plane // lanes * lanes if used == lanes else 0
        full_out = out_plane // lanes * lanes if used == lanes else 0
        for n in range(n_batch):
            base = (n * channels + c0) * plane
            for p0 in range(0, full_in, lanes):
                transpose_tile(xf, base + p0, plane, src, p0 * lanes, lanes)
            for lane in range(used):  # (a loop per channel: contiguous reads)
                for p in range(full_in, plane):
                    src[p, lane] = xf[base + lane * plane + p]
            for i in range(height):
                start = (i + pad_top) * grid_w + pad_left
                copy2d(grid[start:start + width], src[i * width:(i + 1) * width])
            step = stride_w * lanes
            for oh in range(out_h):
                row = oh * stride_h * grid_w * lanes
                ow = 0
                while ow + 4 <= out_w:
                    channel_taps4(flat, row + ow * step, step, offsets, taps, shift, dst,
                                  (oh * out_w + ow) * lanes)
                    ow += 4
                while ow < out_w:
                    channel_taps1(flat, row + ow * step, step, offsets, taps, shift, dst,
                                  (oh * out_w + ow) * lanes)
                    ow += 1
            if post is not None:  # element-wise: on the channels-last block, in L1
                finish_block(dst, 0, out_plane, 0, lanes, post, scaled, bits)
            base = (n * channels + c0) * out_plane
            for p0 in range(0, full_out, lanes):
                transpose_tile(dst, p0 * lanes, lanes, of, base + p0, out_plane)
            for lane in range(used):
                for p in range(full_out, out_plane):
                    of[base + lane * out_plane + p] = dst[p, lane]
    return 0


@parallel_kernel
def tiled_conv2d(xflat, image_stride, channel_stride, a, offsets, bias, out, cols_q,
                 block_rows, channel_block, cin, tile_rows, post, worker, workers):
    """Direct convolution as an implicit GEMM in register tiles, for layers with several
    output channels per group (LeNet's and other thin-input layers).

    For a block of output rows, out[k, p] = sum over taps m of a[k, m] * input[p +
    offsets[m]], with p a position on the phase-split grid (rows of ``cols_q``) and m
    running over (input channel, kernel row, kernel column): the microkernel's
    ``gather_tile`` keeps MR (``tile_rows``: 6, or 4 with ``gather_tile4``) output
    channels by NV vectors of positions in registers through all the taps, reading each
    tap's inputs in place (no im2col copy). The grid's columns past the output width are
    computed into the block buffer and dropped when it is stored. A job is one image, group, block of ``block_rows`` output
    rows and block of ``channel_block`` (a multiple of the tile's rows) output channels:
    small images split by channels rather than into row blocks thinner than a register
    tile.
    xflat: the phase-split input (N, C, sh, sw, Hq, Wq) flattened, then the slack the
    last tiles may read (:func:`tiled_slack`); ``image_stride`` and ``channel_stride``:
    its elements per image and per channel; a: (groups, kg_pad, cin * kH * kW) weights,
    rows past kg zero; offsets: int64 (cin * kH * kW,); out: (N, K, OH, OW).
    """
    n_batch, out_channels, out_h, out_w = out.shape
    groups, kg_pad, depth = a.shape
    kg = out_channels // groups
    panel = NV * (VECTOR_BYTES // out.itemsize)
    blocks = -(-out_h // block_rows)
    channel_blocks = -(-kg_pad // channel_block)
    acc = np.empty((channel_block, -(-(block_rows * cols_q) // panel) * panel), dtype=out.dtype)
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(out.itemsize)
    my_first, my_stop = share(worker, workers, n_batch * groups * blocks * channel_blocks)
    for job in range(my_first, my_stop):
        k_lo = (job % channel_blocks) * channel_block
        k_hi = min(kg_pad, k_lo + channel_block)
        n, g, oh0, nrows = _row_block_job(job // channel_blocks, blocks, groups, block_rows,
                                          out_h)
        base = n * image_stride + g * cin * channel_stride + oh0 * cols_q
        _tiles(a[g], xflat, base, offsets, acc, k_lo, k_hi, -(-(nrows * cols_q) // panel),
               depth, tile_rows, panel)
        for kk in range(k_lo, min(k_hi, kg)):
            if post is None:
                _store_rows(acc[kk - k_lo], cols_q, bias[g * kg + kk], out[n, g * kg + kk],
                            oh0, nrows)
            else:
                _store_finished_rows(acc[kk - k_lo], cols_q, bias[g * kg + kk],
                                     out[n, g * kg + kk], oh0, nrows, post, scaled, bits)
    return 0


@njit(inline="always")
def _tiles(weights, src, base, offsets, acc, k_lo, k_hi, n_panels, depth, tile_rows, panel):
    """acc[k - k_lo, p] = sum over taps m of weights[k, m] * src[base + p + offsets[m]] for
    output channels k in [k_lo, k_hi) and positions p in ``n_panels`` panels."""
    ld = acc.shape[1]
    for k0 in range(k_lo, k_hi, tile_rows):
        for t in range(n_panels):
            if tile_rows == 4:
                gather_tile4(weights, k0 * depth, depth, src, base + t * panel, offsets,
                             acc, (k0 - k_lo) * ld + t * panel, ld, depth, False)
            else:
                gather_tile(weights, k0 * depth, depth, src, base + t * panel, offsets,
                            acc, (k0 - k_lo) * ld + t * panel, ld, depth, False)


@parallel_kernel
def grouped_tiled_conv2d(x, a, offsets, bias, out, gathers, cols_q, slack, block_rows,
                         tile_rows, post, worker, workers):
    """:func:`tiled_conv2d` for grouped layers, without the padded copy of the input.

    A job is one image, group and block of output rows, all the group's output channels;
    it gathers the group's input channels, padded and phase-split, just the rows the
    block reads, into a buffer of its own that stays in cache, and runs the register
    tiles on it (``offsets`` address that buffer). The gather follows ``gathers[b]``,
    for row block b the source index in the (H * W) plane of each buffer element, H * W
    for padding, where a copy of the plane is followed by a zero (:func:`grouped_gathers`):
    one loop per channel, where the short rows of a small map each cost a loop of their
    own (and a test per value cost a fifth more). A grouped layer's jobs read
    disjoint channels, so nothing is gathered twice; the padded copy of the whole input,
    a pass over memory there and back, cost more than the arithmetic of groups of 8
    channels (measured: RegNet's 8 x 440 channels of 14x14, 55 groups, stride 2: copy
    0.66 ms, tiles 0.22 ms). x: (N, C, H, W); a, bias, out as in :func:`tiled_conv2d`.
    """
    n_batch, out_channels, out_h, out_w = out.shape
    groups, kg_pad, depth = a.shape
    kg = out_channels // groups
    cin, plane_in = x.shape[1] // groups, x.shape[2] * x.shape[3]
    panel = NV * (VECTOR_BYTES // out.itemsize)
    blocks, plane = gathers.shape
    local = np.zeros(cin * plane + slack, dtype=x.dtype)  # the slack stays zero
    source = np.zeros(plane_in + 1, dtype=x.dtype)  # one plane, then the zero padding reads
    acc = np.empty((kg_pad, -(-(block_rows * cols_q) // panel) * panel), dtype=out.dtype)
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(out.itemsize)
    my_first, my_stop = share(worker, workers, n_batch * groups * blocks)
    for job in range(my_first, my_stop):
        n, g, oh0, nrows = _row_block_job(job, blocks, groups, block_rows, out_h)
        gather = gathers[oh0 // block_rows]
        for c in range(cin):
            plane_values = x[n, g * cin + c].reshape(plane_in)
            for k in range(plane_in):
                source[k] = plane_values[k]
            dst = local[c * plane:(c + 1) * plane]
            for k in range(plane):  # a plain gather: no test, no select
                dst[k] = source[gather[k]]
        _tiles(a[g], local, 0, offsets, acc, 0, kg_pad, -(-(nrows * cols_q) // panel), depth,
               tile_rows, panel)
        for kk in range(kg):
            if post is None:
                _store_rows(acc[kk], cols_q, bias[g * kg + kk], out[n, g * kg + kk], oh0,
                            nrows)
            else:
                _store_finished_rows(acc[kk], cols_q, bias[g * kg + kk], out[n, g * kg + kk],
                                     oh0, nrows, post, scaled, bits)
    return 0


def tiled_operands(spec, weight):
    """(a, offsets) for :func:`tiled_conv2d`: weights padded to whole tiles of output
    channels, and each tap's offset on the phase-split grid of one image."""
    kg, cin = spec.out_channels_per_group, spec.in_channels_per_group
    depth = cin * spec.kernel_height * spec.kernel_width
    rows = direct_tile_rows(spec)
    a = np.zeros((spec.groups, -(-kg // rows) * rows, depth), dtype=weight.dtype)
    a[:, :kg] = weight.reshape(spec.groups, kg, depth)
    return a, tap_offsets(spec)


@functools.lru_cache(maxsize=256)
def tap_offsets(spec, rows=None):
    """Each tap's offset on the phase-split grid of one image, or of a block of ``rows``
    phase rows (read-only; kept per spec, as a network calls each layer again and again)."""
    cin, kh, kw = spec.in_channels_per_group, spec.kernel_height, spec.kernel_width
    _, _, sh, sw, rows_q, cols_q = phase_split_shape(spec)
    rows_q = rows_q if rows is None else rows
    c, r, s = np.meshgrid(np.arange(cin), np.arange(kh), np.arange(kw), indexing="ij")
    rr, cc = r * spec.dilation_h, s * spec.dilation_w
    phase = (rr % sh) * sw + cc % sw
    offsets = ((c * sh * sw + phase) * rows_q + rr // sh) * cols_q + cc // sw
    offsets = offsets.reshape(-1).astype(np.int64)
    offsets.setflags(write=False)
    return offsets


def tiled_slack(spec, itemsize) -> int:
    """Elements :func:`tiled_conv2d` may read past the last image: the last panel's
    positions beyond the block (under a panel), and the grid columns past the output
    width, whose taps reach into the next grid row (under a row of Wq)."""
    return NV * (VECTOR_BYTES // itemsize) + phase_split_shape(spec)[5]


def run_tiled(spec, x, weight, bias, out, post=NO_EPILOGUE):
    """:func:`tiled_conv2d` for an ungrouped ``spec``, on its padded, phase-split input."""
    a, offsets = tiled_operands(spec, weight)
    shape = phase_split_shape(spec)
    size = math.prod(shape)
    flat_shape = (size + tiled_slack(spec, x.itemsize),)
    # kept for the weight gradient in a training step (step_columns), else scratch
    xflat = step_columns.columns_for(x, spec, flat_shape, "phase_split") \
        if step_columns.keeping() and weight_grad_reads_phase_split(spec) else None
    if xflat is None:
        xflat = scratch("direct_tiled_input", flat_shape, x.dtype)
    xflat[size:] = 0
    pad_phase_split(x, spec.pad_top, spec.pad_left, xflat[:size].reshape(shape))
    channel_stride = math.prod(shape[2:])
    block_rows, channel_block = tiled_jobs(spec, x.itemsize, numba.get_num_threads())
    tiled_conv2d(xflat, spec.in_channels * channel_stride, channel_stride, a, offsets, bias,
                 out, shape[5], block_rows, channel_block, spec.in_channels_per_group,
                 direct_tile_rows(spec), post)


def run_grouped_tiled(spec, x, weight, bias, out, post=NO_EPILOGUE):
    """:func:`grouped_tiled_conv2d` for ``spec``: blocks of rows as :func:`tiled_jobs` cuts
    them, each job all of its group's channels."""
    a, _ = tiled_operands(spec, weight)
    block_rows, _ = tiled_jobs(spec, x.itemsize, numba.get_num_threads())
    gathers, rows_local = grouped_gathers(spec, block_rows)
    grouped_tiled_conv2d(x, a, tap_offsets(spec, rows_local), bias, out, gathers,
                         phase_split_shape(spec)[5], tiled_slack(spec, x.itemsize), block_rows,
                         direct_tile_rows(spec), post)


@functools.lru_cache(maxsize=64)
def grouped_gathers(spec, block_rows):
    """(gathers, rows_local) for :func:`grouped_tiled_conv2d`: per block of output rows,
    the source index in one input plane of each element of its padded, phase-split
    (sh, sw, rows_local, Wq) buffer, H * W (one past the plane) where that is padding
    (read-only, kept per spec)."""
    _, _, sh, sw, _, cols_q = phase_split_shape(spec)
    rows_local = block_rows + ((spec.kernel_height - 1) * spec.dilation_h) // sh
    blocks = -(-spec.out_height // block_rows)
    b, p, q, i, j = np.meshgrid(np.arange(blocks), np.arange(sh), np.arange(sw),
                                np.arange(rows_local), np.arange(cols_q), indexing="ij")
    ih = (b * block_rows + i) * sh + p - spec.pad_top
    iw = j * sw + q - spec.pad_left
    inside = (ih >= 0) & (ih < spec.in_height) & (iw >= 0) & (iw < spec.in_width)
    padding = spec.in_height * spec.in_width
    gathers = np.where(inside, ih * spec.in_width + iw, padding).reshape(blocks, -1)
    gathers = gathers.astype(np.int64)
    gathers.setflags(write=False)
    return gathers, rows_local


def tiled_jobs(spec, itemsize, threads):
    """(block_rows, channel_block) of :func:`tiled_conv2d`'s jobs: at least four jobs per
    thread where the layer allows, without row blocks thinner than one register tile.

    Row blocks come first (each job then reads its own part of the input); a batch-1
    image too small for enough of them, whose thin row blocks would leave most of every
    tile's positions idle (a 7x7 output: one row is 8 of a tile's 64 positions), is
    split by output channels instead. Measured on 2 threads (AVX-512), 256 -> 512 channels
    3x3 stride 2 on 14x14 at batch 1: 8.6 ms with one-row blocks, 1.1 ms split by channels
    (torch 0.8 ms); 1024 -> 2048 1x1 stride 2: 19 ms -> 2.1 ms (torch 1.6 ms).
    """
    cols_q = phase_split_shape(spec)[5]
    panel = NV * (VECTOR_BYTES // itemsize)
    images = spec.batch * spec.groups
    per_image = -(-4 * threads // images)
    whole_tile_rows = min(spec.out_height, -(-panel // cols_q))
    block_rows = min(direct_block_rows(spec),
                     max(whole_tile_rows, -(-spec.out_height // per_image)))
    row_jobs = images * -(-spec.out_height // block_rows)
    rows = direct_tile_rows(spec)
    channel_tiles = -(-spec.out_channels_per_group // rows)
    channel_blocks = min(channel_tiles, -(-4 * threads // row_jobs))
    return block_rows, -(-channel_tiles // channel_blocks) * rows


def run(spec, x, weight, bias, post=NO_EPILOGUE):
    """Run the direct algorithm for ``spec`` (zero padding still to apply) -> (N, K, OH, OW),
    with the kernel :func:`registry.direct_kernel` names; ``post``, the epilogue
    (:mod:`numbaconv.epilogue`), applied as output rows are written."""
    out = new_output(spec, x.dtype)
    kernel = direct_kernel(spec)
    if kernel == "tiled":
        run_tiled(spec, x, weight, bias, out, post)
    elif kernel == "grouped_tiled":
        run_grouped_tiled(spec, x, weight, bias, out, post)
    elif kernel == "channel_rows":
        xph = phase_split_input(spec, x, "direct_input")
        direct_conv2d(xph, weight, bias, out, spec.dilation_h, spec.dilation_w, spec.groups,
                      direct_block_rows(spec), post)
    elif kernel == "depthwise3x3_rows":
        depthwise3x3_conv2d(x, weight, bias, out, spec.pad_top, spec.pad_left, post)
    elif kernel == "depthwise_channels_last":
        lanes = VECTOR_BYTES // x.itemsize
        per_share = lanes * (spec.in_height * spec.in_width + spec.padded_height
                             * spec.padded_width + spec.out_height * spec.out_width)
        work = scratch("depthwise_work", (numba.get_num_threads(), per_share), x.dtype)
        depthwise_channels_last(x, weight, bias, out, spec.pad_top, spec.pad_left,
                                spec.padded_height, spec.padded_width, spec.stride_h,
                                spec.stride_w, spec.dilation_h, spec.dilation_w, work, post)
    elif kernel == "depthwise3x3_stacked":
        lanes = VECTOR_BYTES // x.itemsize
        grid = spec.padded_height * spec.padded_width
        size = spec.batch * grid + 2 * lanes + 2 * spec.padded_width  # as the kernel's
        count = (spec.batch * spec.padded_height - 2) * spec.padded_width
        per_share = size + -(-count // lanes) * lanes
        work = scratch("depthwise_work", (numba.get_num_threads(), per_share), x.dtype)
        depthwise3x3_stacked(x, weight, bias, out, spec.pad_top, spec.pad_left,
                             spec.padded_height, spec.padded_width, spec.stride_h,
                             spec.stride_w, work, post)
    else:  # depthwise_rows
        cols_q = -(-spec.padded_width // spec.stride_w)
        depthwise_conv2d(x, weight, bias, out, spec.pad_top, spec.pad_left, spec.stride_h,
                         spec.stride_w, spec.dilation_h, spec.dilation_w, cols_q,
                         direct_block_rows(spec), post)
    return out
