"""The gradient of a convolution with respect to its weights, on the CPU.

    grad_weight[k, c, r, s] = sum over n, oh, ow of
        grad_output[n, k, oh, ow] * padded x[n, g * Cg + c, oh * sh + r * dh, ow * sw + s * dw]

(g the group of output channel k, Cg the input channels per group). Six kernels
(:func:`numbaconv.registry.weight_grad_kernel` picks one):

* ``outer_products``: 1x1 layers on 1x1 images (squeeze-and-excitation), whose gradient
  is grad_output^T (K, N) @ input (N, C), a product N rows deep: sums of N outer
  products (:mod:`.outer`).
* ``weight_tiles`` (ungrouped layers with more than one tap): register tiles of MR
  weights' rows (MR (channel, tap) pairs: :func:`tile_plan`) by NV vectors of output
  channels, whose depth runs over output positions: each tap's input values are read in
  place in the padded, stride-phase-split input (contiguous along a row of outputs; the
  columns between rows multiply zeros of the gradient, laid out a row of output
  channels per position), so
  nothing is unfolded. Each thread sums its share of the positions into a partial sum
  of its own; the partial sums are added at the end.
* ``weight_products``: per group, grad_weight (Kg, Cg * kH * kW) = grad_output (Kg,
  N * OH * OW) @ im2col(x)^T, the product of the two sides' rows over the positions by
  the register-tiled product of :mod:`.microkernel` (``matmul_bt``, which transposes
  the columns' side as it packs it: neither is transposed in memory); the im2col matrix
  is unfolded (``gemm.unfold``) for a chunk of images at a time, each chunk's product
  added to the last; a pointwise layer's images are their own, multiplied in place.
  The side whose register tiles the threads share best gives the product's rows (the
  result is transposed where that is the im2col matrix's). Against transposing the
  gradient and the result in memory (AVX2, 2 threads, batch 8, pointwise, ms, torch in brackets): 832 -> 256 on
  7x7 2.25 -> 1.66 (1.62), 116 -> 116 on 28x28 4.4 -> 2.7 (2.9), 256 -> 256 on 56x56
  35.9 -> 26.1 (54.0).
* ``weight_dots``: groups too narrow for the product's panels (fewer output channels,
  or input channels x taps, than a panel's NV vectors hold): dot products of the
  gradient's rows with the im2col matrix's, 4 x 4 at a time (:mod:`.row_dots`), straight
  into the weights' layout. An ungrouped layer's im2col rows are not copied: they are
  the runs each tap reads in the padded, phase-split input, against the gradient's rows
  widened to that input's columns (:func:`_run_shifted_dots`).
* ``depthwise_weight_lanes``: depthwise layers on small planes, vectorised across
  channels (see the kernel).
* ``weight_taps``: one dot product per weight, for few output channels per group
  (depthwise layers: a matrix product one column wide would pad every column to a whole
  vector): for each tap, the gradient's rows against the input rows the tap reads in
  the padded, stride-phase-split input (``layout.phase_split_input``), where they are
  contiguous for every stride and dilation; products are summed into a row of partial
  sums (vectorised), which is summed once at the end.
"""

import functools
import math

import numpy as np

from ..isa import MR, NV, VECTOR_BYTES
from ..registry import (depthwise_lane_block, product_blocks, weight_dots_row_block,
                        weight_grad_chunk, weight_grad_chunk_images, weight_grad_kernel,
                        weight_dots_shifted, weight_rows_from_im2col)
from .dispatch import parallel_kernel, share
from .gemm import unfold
from .layout import pad_phase_split, phase_split_input, phase_split_shape, transpose_into
from .microkernel import _tile, matmul_bt, transpose_block, workspace_size
from .outer import COLUMN_BLOCK, outer_sums
from . import step_columns
from .row_dots import row_dots, shifted_row_dots
from .workspace import scratch
from .. import array_pool

@parallel_kernel
def weight_products(rows, columns, out, block_rows, block_cols, accumulate, worker, workers):
    """out[g, i, j] (+)= sum over b of rows[b, g * M + i] . columns[b, g * Nc + j], for
    i < M, j < Nc: a weight gradient as the product of its two sides' rows over the
    positions, L of them, rows (B, G * M, L) and columns (B, G * Nc, L): the output
    gradient's and the im2col matrix's, either way round (a pointwise layer's input is
    its own im2col matrix, its B images read in place; other layers give one chunk of
    images side by side, B = 1). ``matmul_bt`` transposes the columns' side as it packs
    it into panels, so neither side is transposed in memory. out (G, M, Nc). Jobs:
    blocks of ``block_rows`` rows by ``block_cols`` columns of one group's result
    (:func:`product_blocks`); share ``worker`` takes jobs worker, worker + workers, ...
    """
    groups, m, n_cols = out.shape
    n_mats, positions = rows.shape[0], rows.shape[2]
    row_blocks, col_blocks = -(-m // block_rows), -(-n_cols // block_cols)
    work = np.empty(workspace_size(positions), dtype=rows.dtype)
    my_first, my_stop = share(worker, workers, groups * row_blocks * col_blocks)
    for job in range(my_first, my_stop):
        g = job // (row_blocks * col_blocks)
        i0 = job // col_blocks % row_blocks * block_rows
        j0 = job % col_blocks * block_cols
        i1, j1 = min(m, i0 + block_rows), min(n_cols, j0 + block_cols)
        for b in range(n_mats):
            matmul_bt(rows[b, g * m + i0:g * m + i1], columns[b, g * n_cols + j0:g * n_cols + j1],
                      out[g, i0:i1, j0:j1], work, accumulate or b > 0)
    return 0


@parallel_kernel
def positions_last(grad, wide, ext, worker, workers):
    """ext[n, oh * wide + ow, k] = grad[n, k, oh, ow]: the gradient with a row of output
    channels per position, rows ``wide`` positions apart, zero in the columns past OW and
    the channels past K (what ``weight_tiles`` multiplies); one (image, row) per job.
    grad C-contiguous.

    A row's (channels, columns) block is transposed in registers (``transpose_block``):
    one value at a time, 64 channels of 64 columns took 1.7 ns a value (AVX-512, one
    thread: 3.6 ms for a batch of 8 on 64x64, where weight_tiles itself took 1.3)."""
    n_batch, out_channels, out_h, out_w = grad.shape
    padded_k = ext.shape[2]
    plane = out_h * out_w
    gf, ef = grad.reshape(grad.size), ext.reshape(ext.size)
    my_first, my_stop = share(worker, workers, n_batch * out_h)
    for job in range(my_first, my_stop):
        n = job // out_h
        oh = job - n * out_h
        src = n * out_channels * plane + oh * out_w  # channel 0 of the row
        dst = (n * ext.shape[1] + oh * wide) * padded_k  # its first position
        transpose_block(gf, src, plane, ef, dst, padded_k, out_channels, out_w)
        for ow in range(out_w):
            row = dst + ow * padded_k
            for k in range(out_channels, padded_k):
                ef[row + k] = 0
        for q in range(dst + out_w * padded_k, dst + wide * padded_k):
            ef[q] = 0
    return 0


@parallel_kernel
def weight_tiles(xflat, image_size, ext, partials, row_starts, positions, chunk, worker,
                 workers):
    """partials[worker, i, j, :] += the gradient of the weight that row j of tile i stands
    for, summed over the positions of this share's jobs: register tiles of MR rows of
    the input by NV vectors of output channels, the depth running over positions.

    xflat: the padded input split by stride phase (N, C, sh, sw, Hq, Wq), flat, images
    ``image_size`` apart; ext (N, OH * Wq, Kp): the gradient, a row of output channels
    per position (``positions_last``). Row j of tile i reads, for output position m =
    oh * Wq + ow, xflat[image + row_starts[i, j] + m] (a tap of a channel: see
    :func:`tile_plan`): contiguous along m, so the tile reads its rows in place, and the
    positions of the columns past OW, whose gradient is zero, add nothing.
    ``positions``: (OH - 1) * Wq + OW, the last one that counts; jobs are (image,
    ``chunk`` positions), whose gradient rows stay in L2 for every tile. Each share
    zeroes its own partial sums first (in its own cache: a fresh ``np.zeros`` of them
    all, 1.2 MB for 128 -> 128 3x3 on AVX-512, cost 0.1 ms a call in a training step)
    and returns 1, so that the caller sums the partials of the shares that ran.
    """
    n_batch = ext.shape[0]
    n_tiles, padded_k = partials.shape[1], partials.shape[3]
    lanes = VECTOR_BYTES // xflat.itemsize
    panel = NV * lanes
    n_panels = -(-padded_k // panel)
    wide_positions = ext.shape[1]
    ef = ext.reshape(ext.size)
    pf = partials.reshape(partials.size)
    chunks = -(-positions // chunk)
    mine = partials[worker].reshape(partials[worker].size)
    for q in range(mine.size):
        mine[q] = 0
    my_first, my_stop = share(worker, workers, n_batch * chunks)
    for job in range(my_first, my_stop):
        n = job // chunks
        m0 = job % chunks * chunk
        depth = min(chunk, positions - m0)
        b_row = (n * wide_positions + m0) * padded_k
        for i in range(n_tiles):
            starts = row_starts[i]
            c_base = (worker * n_tiles + i) * MR * padded_k
            for p in range(n_panels):
                nv = min(NV, (padded_k - p * panel) // lanes)
                _tile(nv, xflat, n * image_size + m0, starts, ef, b_row + p * panel,
                      padded_k, pf, c_base + p * panel, padded_k, depth, True)
    return 1


@parallel_kernel
def sum_partials(partials, out, worker, workers):
    """out[k, d] = sum over s of partials[s, d // MR, d % MR, k] for k < K, d < D, out (K,
    D): ``weight_tiles``' partial sums added and put in the weights' layout in one pass,
    a block of LANES weights' rows per job, summed along the output channels, then
    transposed in registers (``transpose_block``). (NumPy's sum, then a copy of its
    transpose: two passes, 0.18 ms for 128 -> 128 3x3 on AVX-512.)"""
    shares = partials.shape[0]
    padded_k = partials.shape[3]
    out_channels, weights = out.shape
    lanes = VECTOR_BYTES // out.itemsize
    flat = partials.reshape(shares, partials.shape[1] * MR, padded_k)
    block = np.empty((lanes, padded_k), out.dtype)
    block_flat, out_flat = block.reshape(block.size), out.reshape(out.size)
    my_first, my_stop = share(worker, workers, -(-weights // lanes))
    for job in range(my_first, my_stop):
        d0 = job * lanes
        rows = min(lanes, weights - d0)
        for i in range(rows):
            dst = block[i]
            first = flat[0, d0 + i]
            for k in range(padded_k):
                dst[k] = first[k]
            for s in range(1, shares):
                src = flat[s, d0 + i]
                for k in range(padded_k):
                    dst[k] += src[k]
        transpose_block(block_flat, 0, padded_k, out_flat, d0, weights, rows, out_channels)
    return 0


@functools.lru_cache(maxsize=64)
def tile_plan(spec):
    """(row_starts, weight_index) of ``weight_tiles`` for ``spec``, both (tiles, MR):
    row j of tile i computes the weight weight_index[i, j] of a (C * kH * kW) row of the
    weights (-1 for none) from the run of inputs its tap reads, which starts
    row_starts[i, j] into an image of the padded, phase-split input.

    The rows are the weights in order (the taps of a channel, channel by channel), MR a
    tile, each starting wherever its tap's run does (the tile takes its rows' starts from
    the plan), so that only the last tile can have rows without a weight (they read the
    last weight's run). When a tile's rows had to lie a constant stride apart, tiles of
    MR channels of one tap left 5 of 6 rows without a weight on a grey image, and tiles
    of one channel's taps in one stride phase of a kernel row 5 of 12 on ResNet's 7x7
    stem at stride 2 (4 + 3 taps a phase)."""
    channel_size = math.prod(phase_split_shape(spec)[2:])
    taps = spec.kernel_height * spec.kernel_width
    weights = spec.in_channels * taps
    starts = (np.arange(spec.in_channels)[:, None] * channel_size
              + _tap_starts(spec).reshape(1, taps)).reshape(-1)
    rows = -(-weights // MR) * MR
    index = np.full(rows, -1, np.int64)
    index[:weights] = np.arange(weights)
    row_starts = np.full(rows, starts[-1], np.int64)
    row_starts[:weights] = starts
    plan = (row_starts.reshape(-1, MR), index.reshape(-1, MR))
    for array in plan:
        array.setflags(write=False)
    return plan


@parallel_kernel
def depthwise_weight_lanes(x, grad, out, stride_h, stride_w, pad_top, pad_left, dilation_h,
                           dilation_w, block, worker, workers):
    """out[c, 0, r, s] = the weight gradient of a depthwise layer (one input and one
    output channel per group), ``block`` channels per job, vectorised across them: each
    image's block of input (zero-padded) and gradient planes is first turned channels-
    last in buffers of the job's own, so that every (position, tap) is one multiply-add
    of two contiguous rows of channels. For small planes (7x7, 14x14), whose rows are too
    short to vectorise along (``weight_taps``: 4.3 ms for 1152 channels on 7x7 at batch
    8, this 0.4 ms)."""
    n_batch, channels, height, width = x.shape
    out_h, out_w = grad.shape[2], grad.shape[3]
    _, _, kernel_h, kernel_w = out.shape
    taps = kernel_h * kernel_w
    rows = (out_h - 1) * stride_h + (kernel_h - 1) * dilation_h + 1
    cols = (out_w - 1) * stride_w + (kernel_w - 1) * dilation_w + 1
    padded = np.zeros((rows, cols, block), dtype=x.dtype)
    lanes = np.empty((out_h, out_w, block), dtype=x.dtype)
    acc = np.empty((taps, block), dtype=x.dtype)
    my_first, my_stop = share(worker, workers, -(-channels // block))
    for job in range(my_first, my_stop):
        c0 = job * block
        count = min(block, channels - c0)
        acc[:, :] = 0
        for n in range(n_batch):
            for j in range(count):
                src = x[n, c0 + j]
                for i in range(rows):
                    ih = i - pad_top
                    for q in range(cols):
                        iw = q - pad_left
                        inside = 0 <= ih < height and 0 <= iw < width
                        padded[i, q, j] = src[ih, iw] if inside else 0
                g = grad[n, c0 + j]
                for i in range(out_h):
                    for q in range(out_w):
                        lanes[i, q, j] = g[i, q]
            for i in range(out_h):
                for q in range(out_w):
                    g_row = lanes[i, q]
                    for t in range(taps):
                        x_row = padded[i * stride_h + t // kernel_w * dilation_h,
                                       q * stride_w + t % kernel_w * dilation_w]
                        a = acc[t]
                        for j in range(count):
                            a[j] += g_row[j] * x_row[j]
        for t in range(taps):
            for j in range(count):
                out[c0 + j, 0, t // kernel_w, t % kernel_w] = acc[t, j]
    return 0


@parallel_kernel
def weight_taps(xph, grad, out, dilation_h, dilation_w, groups, worker, workers):
    """out[k, c, r, s] = the weight gradient (see the module's docstring), one (output
    channel, input channel) per job.

    xph (N, C, sh, sw, Hq, Wq): the padded input split by stride phase; grad (N, K, OH,
    OW); out (K, Cg, kH, kW).
    """
    n_batch, _, stride_h, stride_w = xph.shape[:4]
    out_channels, cg, kernel_h, kernel_w = out.shape
    out_h, out_w = grad.shape[2], grad.shape[3]
    kg = out_channels // groups
    partial = np.empty(out_w, dtype=grad.dtype)
    my_first, my_stop = share(worker, workers, out_channels * cg)
    for job in range(my_first, my_stop):
        k = job // cg
        c = job % cg
        channel = k // kg * cg + c
        for r in range(kernel_h):
            p = r * dilation_h % stride_h
            row_shift = r * dilation_h // stride_h
            for s in range(kernel_w):
                q = s * dilation_w % stride_w
                col_shift = s * dilation_w // stride_w
                for j in range(out_w):
                    partial[j] = 0
                for n in range(n_batch):
                    for i in range(out_h):
                        g_row = grad[n, k, i]
                        x_row = xph[n, channel, p, q, i + row_shift, col_shift:col_shift + out_w]
                        for j in range(out_w):
                            partial[j] += g_row[j] * x_row[j]
                total = partial.dtype.type(0)
                for j in range(out_w):
                    total += partial[j]
                out[k, c, r, s] = total
    return 0


def run(spec, x, grad, threads):
    """The weight gradient (K, Cg, kH, kW) of the zero-padded convolution ``spec`` for
    input x (N, C, H, W) and grad (N, K, OH, OW), both C-contiguous of the spec's dtype."""
    cg = spec.in_channels_per_group
    kernel = weight_grad_kernel(spec)
    if kernel == "outer_products":  # (K, N) @ (N, C): the stride picks pixel (0, 0) alone
        out = np.empty((spec.out_channels, spec.in_channels), x.dtype)
        outer_sums(grad.reshape(spec.batch, spec.out_channels),
                   np.ascontiguousarray(x[:, :, 0, 0]), out,
                   workers=-(-spec.in_channels // COLUMN_BLOCK))
        return out.reshape(spec.out_channels, cg, 1, 1)
    out = array_pool.empty((spec.out_channels, cg, spec.kernel_height, spec.kernel_width),
                           x.dtype)
    if kernel == "depthwise_weight_lanes":
        block = depthwise_lane_block(spec.in_channels, threads, x.itemsize)
        depthwise_weight_lanes(x, grad, out, spec.stride_h, spec.stride_w, spec.pad_top,
                               spec.pad_left, spec.dilation_h, spec.dilation_w, block,
                               workers=-(-spec.in_channels // block))
        return out
    if kernel == "weight_taps":
        xph = _phase_split_input(spec, x, "weight_grad_input")
        weight_taps(xph, grad, out, spec.dilation_h, spec.dilation_w, spec.groups,
                    workers=spec.out_channels * cg)
        return out
    if kernel == "weight_winograd":
        from .winograd_weight_grad import run as run_winograd  # (which imports this module)

        return run_winograd(spec, x, grad, out)
    if kernel == "weight_tiles":
        return _run_tiles(spec, x, grad, threads, out)
    if kernel == "weight_dots" and weight_dots_shifted(spec):
        return _run_shifted_dots(spec, x, grad, threads, out)
    return _run_row_products(spec, x, grad, threads, out, kernel)


def _run_row_products(spec, x, grad, threads, out, kernel):
    """``weight_products`` or ``weight_dots`` for ``spec``: per chunk of images, the
    gradient's rows (K, chunk * P) against the im2col matrix's (G * D, chunk * P), D = Cg *
    kH * kW, each a view of the arrays where one image makes the chunk (and, for a
    pointwise layer, the input itself; weight_products then takes every image in one
    launch, each in place). Which side gives the rows: ``registry.weight_rows_from_im2col``
    (for the products, the side whose tiles the threads share best; for the dots, the
    side with more rows). With the im2col side first the (small) result is transposed
    into ``out`` at the end."""
    positions = spec.out_height * spec.out_width
    kg = spec.out_channels_per_group
    depth = spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    dots = kernel == "weight_dots"
    im2col_first = weight_rows_from_im2col(spec, threads)
    if im2col_first:
        result = scratch("weight_grad_output", (spec.groups, depth, kg), x.dtype)
    else:
        result = out.reshape(spec.groups, kg, depth)
    if dots:
        row_block = weight_dots_row_block(min(kg, depth), x.itemsize)
    else:
        block_rows, block_cols = product_blocks(result.shape[1], result.shape[2],
                                                spec.groups, threads, x.itemsize)
        jobs = spec.groups * -(-result.shape[1] // block_rows) \
            * -(-result.shape[2] // block_cols)
    every_image = spec.is_pointwise and not dots  # in place, summed in one launch
    chunk = spec.batch if every_image else weight_grad_chunk_images(spec)
    for n0 in range(0, spec.batch, chunk):
        n1 = min(spec.batch, n0 + chunk)
        if every_image:
            grad_rows = grad.reshape(spec.batch, spec.out_channels, positions)
            columns = x.reshape(spec.batch, spec.in_channels, positions)
        else:
            grad_rows = _side_by_side(grad, n0, n1, "weight_grad_rows")
            # the forward pass's matrix where a training step kept it (every image)
            kept = step_columns.take(x, spec) if chunk == spec.batch else None
            columns = kept[0] if kept is not None else \
                _im2col(spec, x, n0, n1, "weight_grad_columns")
        first, second = (columns, grad_rows) if im2col_first else (grad_rows, columns)
        if dots:
            row_dots(first, second, result, row_block, n0 > 0)
        elif every_image:
            weight_products(first, second, result, block_rows, block_cols, False, workers=jobs)
        else:
            weight_products(first[None], second[None], result, block_rows, block_cols, n0 > 0,
                            workers=jobs)
    if im2col_first:
        transpose_into(result, out.reshape(spec.groups, kg, depth))
    return out


def _kept_phase_split(spec, x):
    """The padded, phase-split input that a training step's forward pass kept for this
    weight gradient (``direct.run_tiled``: ``step_columns``), or None."""
    kept = step_columns.take(x, spec, "phase_split")
    if kept is None:
        return None
    shape = phase_split_shape(spec)
    return kept[:math.prod(shape)].reshape(shape)


def _phase_split_input(spec, x, name):
    """``layout.phase_split_input``, or the forward pass's where it was kept."""
    kept = _kept_phase_split(spec, x)
    return kept if kept is not None else phase_split_input(spec, x, name)


def _side_by_side(a, n0, n1, name):
    """Images n0:n1 of ``a`` (N, C, H, W) as one (C, (n1 - n0) * H * W) matrix: the image
    itself where there is one, else the images copied side by side into scratch
    ``name``."""
    channels, positions = a.shape[1], a.shape[2] * a.shape[3]
    if n1 - n0 == 1:
        return a[n0].reshape(channels, positions)
    out = scratch(name, (channels, (n1 - n0) * positions), a.dtype)
    unfold(a[n0:n1], 1, 1, 0, 0, 1, 1, 1, 1, a.shape[2], a.shape[3], out)
    return out


def _im2col(spec, x, n0, n1, name):
    """The im2col matrix of images n0:n1 of ``x`` for ``spec``, (C * kH * kW, (n1 - n0) *
    OH * OW), unfolded into scratch ``name``; a pointwise layer's is x itself
    (:func:`_side_by_side`)."""
    if spec.is_pointwise:
        return _side_by_side(x, n0, n1, name)
    depth = spec.in_channels * spec.kernel_height * spec.kernel_width
    out = scratch(name, (depth, (n1 - n0) * spec.out_height * spec.out_width), x.dtype)
    unfold(x[n0:n1], spec.stride_h, spec.stride_w, spec.pad_top, spec.pad_left,
           spec.dilation_h, spec.dilation_w, spec.kernel_height, spec.kernel_width,
           spec.out_height, spec.out_width, out)
    return out


def _tap_starts(spec):
    """(kH, kW): where each tap's run of inputs starts in a channel of the padded input
    split by stride phase (``phase_split_shape``): output position oh * Wq + ow of tap
    (r, s) reads that channel's flat element start[r, s] + oh * Wq + ow."""
    _, _, sh, sw, rows_q, cols_q = phase_split_shape(spec)
    rr = np.arange(spec.kernel_height)[:, None] * spec.dilation_h
    cc = np.arange(spec.kernel_width)[None, :] * spec.dilation_w
    return ((rr % sh) * sw + cc % sw) * (rows_q * cols_q) + rr // sh * cols_q + cc // sw


def _run_shifted_dots(spec, x, grad, threads, out):
    """``weight_dots`` of an ungrouped layer with more than one tap, without an im2col
    matrix: the dot products of the gradient's rows, widened to the phase-split grid's
    rows (zero past OW), with the rows each tap reads in the padded, phase-split input
    (:func:`_tap_starts`), both in place (``row_dots.shifted_row_dots``); the images
    shared among the threads, each thread's sums added at the end."""
    shape = phase_split_shape(spec)
    image_size = math.prod(shape[1:])
    xph = _kept_phase_split(spec, x)
    if xph is None:
        xph = scratch("weight_grad_dots_input", shape, x.dtype)
        pad_phase_split(x, spec.pad_top, spec.pad_left, xph)
    cols_q = shape[5]
    rows = scratch("weight_grad_dots_rows",
                   (spec.batch, spec.out_channels, 1, 1, spec.out_height, cols_q), x.dtype)
    pad_phase_split(grad, 0, 0, rows)  # (the columns past OW zero)
    row_size = spec.out_height * cols_q
    channel_stride = math.prod(shape[2:])
    tap_rows = (np.arange(spec.in_channels)[:, None] * channel_stride
                + _tap_starts(spec).reshape(1, -1)).reshape(-1)
    shares = max(1, min(threads, spec.batch))
    partials = np.zeros((shares, spec.out_channels, tap_rows.size), x.dtype)
    shifted_row_dots(rows.reshape(-1), np.arange(spec.out_channels) * row_size,
                     spec.out_channels * row_size, xph.reshape(-1), tap_rows, image_size,
                     (spec.out_height - 1) * cols_q + spec.out_width, spec.batch, partials,
                     weight_dots_row_block(tap_rows.size, x.itemsize), workers=shares)
    out.reshape(spec.out_channels, -1)[...] = partials.sum(axis=0) if shares > 1 else partials[0]
    return out


def _run_tiles(spec, x, grad, threads, out):
    """``weight_tiles`` for ``spec`` (groups 1): the padded, phase-split input (x itself
    for an unpadded layer at stride 1: the last tap's run ends at the last input), the
    gradient positions-last, one partial sum per share, then their sum put in ``out`` (K,
    C, kH, kW) (:func:`tile_plan`)."""
    cols_q = phase_split_shape(spec)[5]
    lanes = VECTOR_BYTES // x.itemsize
    row_starts, _ = tile_plan(spec)
    padded_k = -(-spec.out_channels // lanes) * lanes
    xph = _phase_split_input(spec, x, "weight_grad_tiles_input")
    ext = scratch("weight_grad_tiles_output",
                  (spec.batch, spec.out_height * cols_q, padded_k), x.dtype)
    positions_last(np.ascontiguousarray(grad), cols_q, ext,
                   workers=spec.batch * spec.out_height)
    positions = (spec.out_height - 1) * cols_q + spec.out_width
    chunk = weight_grad_chunk(padded_k, x.itemsize)
    jobs = spec.batch * -(-positions // chunk)
    shares = max(1, min(threads, jobs))
    partials = scratch("weight_grad_tiles_partials", (shares, len(row_starts), MR, padded_k),
                       x.dtype)
    ran = weight_tiles(xph.reshape(-1), xph[0].size, ext, partials, row_starts, positions,
                       chunk, workers=shares)
    weights = spec.in_channels * spec.kernel_height * spec.kernel_width
    sum_partials(partials[:ran], out.reshape(spec.out_channels, weights),
                 workers=-(-weights // (4 * lanes)))
    return out
