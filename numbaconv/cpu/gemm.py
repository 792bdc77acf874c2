"""Convolution as matrix products (im2col + :func:`.microkernel.matmul`) on the CPU.

The output is cut into blocks of one image, one group and a few output rows.
Each Numba thread takes its share of the blocks and, per block, unfolds the input
patches into a (C/groups * kH * kW, columns) matrix, multiplies the group's weight
matrix (K/groups, C/groups * kH * kW) by it on the thread's own core, and writes the
result (plus bias) into the output. The unfolded block stays in the core's cache, and
the product runs near the machine's peak, which makes this the fast path
for dense layers Winograd cannot take (1x1, strided, dilated, large kernels).
"""

import numba
import numpy as np
from numba import njit

from ..config import SMALL_WORK
from ..epilogue import NO_EPILOGUE
from ..registry import (gemm_block_rows, gemm_kernel, gemm_whole_columns,
                        weight_grad_reads_im2col)
from . import channels_last, step_columns
from .layout import copy1d, new_output, phase_split_input, subsample
from .workspace import scratch
from .dispatch import parallel_kernel, share
from .epilogue import biased_row, finish_silu, finish_value, new_scratch
from ..isa import MR, NV, VECTOR_BYTES
from .microkernel import matmul, workspace_size


@parallel_kernel
def gemm_conv2d(xph, weight, bias, out, dilation_h, dilation_w, groups, block_rows, post,
                worker, workers):
    """out = weight (*) input + bias, one (image, group, block of output rows) at a time.

    xph: zero-padded input split by stride phase, (N, C, sh, sw, Hq, Wq) from
    ``layout.pad_phase_split`` (so that every unfolded row is a contiguous copy);
    weight (K, C/groups, kH, kW); bias (K,); out (N, K, OH, OW). Share ``worker`` takes
    blocks worker, worker + workers, ... with one unfolding buffer of its own. ``post``:
    the epilogue (``cpu.epilogue``) each output row gets as it is written.
    """
    n_batch, _, stride_h, stride_w = xph.shape[:4]
    out_channels, cin, kernel_h, kernel_w = weight.shape
    out_h, out_w = out.shape[2], out.shape[3]
    kg = out_channels // groups
    taps = kernel_h * kernel_w
    depth = cin * taps
    wmats = weight.reshape(groups, kg, depth)
    blocks_per_plane = -(-out_h // block_rows)
    n_blocks = n_batch * groups * blocks_per_plane
    columns = block_rows * out_w
    cols = np.empty((depth, columns), dtype=xph.dtype)
    result = np.empty((kg, columns), dtype=xph.dtype)
    work = np.empty(workspace_size(depth), dtype=xph.dtype)
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(xph.itemsize)
    my_first, my_stop = share(worker, workers, n_blocks)
    for block in range(my_first, my_stop):
        i0 = (block % blocks_per_plane) * block_rows
        ng = block // blocks_per_plane
        g = ng % groups
        n = ng // groups
        rows = min(block_rows, out_h - i0)
        width = rows * out_w
        # Unfold: cols[(c, r, s), (i - i0) * OW + j]
        #       = padded[n, g * cin + c, i * sh + r * dh, j * sw + s * dw]
        for row in range(depth):
            c = row // taps
            rr = ((row // kernel_w) % kernel_h) * dilation_h
            cc = (row % kernel_w) * dilation_w
            plane = xph[n, g * cin + c, rr % stride_h, cc % stride_w]
            dst = cols[row]
            for i in range(rows):
                src = plane[i0 + i + rr // stride_h, cc // stride_w:cc // stride_w + out_w]
                base = i * out_w
                for j in range(out_w):
                    dst[base + j] = src[j]
        res = result[:, :width]
        matmul(wmats[g], cols[:, :width], res, work)
        for k in range(kg):
            # Rows typed contiguous (a row of a 2-D slice is not): the loop vectorises.
            dst = out[n, g * kg + k].reshape(out_h * out_w)[i0 * out_w:i0 * out_w + width]
            src = result[k, :width]
            if post is None:
                b = bias[g * kg + k]
                for q in range(width):
                    dst[q] = src[q] + b
            else:
                biased_row(dst, src, bias[g * kg + k], post)
                finish_silu(out[n, g * kg + k], i0, i0 + rows, 0, out_w, post, scaled, bits)
    return 0


@parallel_kernel
def unfold(x, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, kernel_h,
           kernel_w, out_h, out_w, cols, worker, workers):
    """cols[(c, r, s), n * OH * OW + i * OW + j] = x[n, c, i * sh + r * dh - pad_top,
    j * sw + s * dw - pad_left], zero where that lies in the padding: the im2col matrices
    of all images side by side (C * kH * kW, columns >= N * OH * OW), so that one product
    serves the whole batch.

    Read straight from the unpadded input (C-contiguous x, contiguous cols) with flat
    unsigned indices: copying a padded, phase-split input first, then the matrix out of
    it a view per output row, cost as much as the copy itself (AVX2, one thread, 256 ->
    256 3x3 stride 2 on 28x28: 0.37 + 0.32 ms, against 0.10 ms so).
    """
    n_batch, channels, height, width = x.shape
    depth, columns = cols.shape
    positions = out_h * out_w
    src = x.reshape(n_batch * channels * height * width)
    dst = cols.reshape(depth * columns)
    if kernel_h == 1 and kernel_w == 1 and stride_h == 1 and stride_w == 1 and \
            pad_top == 0 and pad_left == 0 and out_h == height and out_w == width:
        # a pointwise layer's images side by side: a plane per (image, channel), one copy
        # (through the narrow rows' table, 7x7 planes took 4x as long)
        my_first, my_stop = share(worker, workers, n_batch * channels)
        for job in range(my_first, my_stop):
            n = job // channels
            _copy_strided(dst, (job - n * channels) * columns + n * positions, src,
                          job * positions, 1, positions)
        return 0
    if out_w < NARROW_ROWS:
        _unfold_narrow(src, dst, n_batch, channels, height, width, stride_h, stride_w,
                       pad_top, pad_left, dilation_h, dilation_w, kernel_h, kernel_w, out_h,
                       out_w, columns, worker, workers)
        return 0
    # One job per (image, channel, kernel row): its kernel_w rows of cols in turn. A job per
    # row of cols spent ~10 integer divisions on rows of a few elements (8 x 512 x 2 x 2,
    # 3x3: 2.6 ms where the copy itself is ~20 us).
    my_first, my_stop = share(worker, workers, n_batch * channels * kernel_h)
    for job in range(my_first, my_stop):
        image_channel = job // kernel_h
        n = image_channel // channels
        plane = image_channel * height * width
        off_h = (job - image_channel * kernel_h) * dilation_h - pad_top
        row = (job - n * channels * kernel_h) * kernel_w
        for s in range(kernel_w):
            off_w = s * dilation_w - pad_left
            # the output columns whose input column j * sw + off_w lies inside: [j0, j1)
            j0 = min(out_w, max(0, -(off_w // stride_w)))
            j1 = min(out_w, max(j0, -((off_w - width) // stride_w)))
            start = row * columns + n * positions
            row += 1
            for i in range(out_h):
                ih = i * stride_h + off_h
                run = start + i * out_w
                if ih < 0 or ih >= height:
                    _fill_zero(dst, run, out_w)
                    continue
                _fill_zero(dst, run, j0)
                _copy_strided(dst, run + j0, src,
                              plane + ih * width + off_w + j0 * stride_w, stride_w, j1 - j0)
                _fill_zero(dst, run + j1, out_w - j1)
    return 0


# Output rows narrower than this are unfolded through a table of source offsets
# (:func:`_unfold_narrow`), wider ones a copy per row. Zen 4 (AVX-512, 2 threads),
# table against rows: 8 x 256 x 4 x 4, 3x3: 0.18 against 0.48 ms; 8 x 128 x 8 x 8 0.36
# against 1.04; 8 x 64 x 16 x 16 0.52 against 0.85; 8 x 64 x 28 x 28 1.30 against 0.94.
NARROW_ROWS = 20


@njit(inline="always")
def _unfold_narrow(src, dst, n_batch, channels, height, width, stride_h, stride_w, pad_top,
                   pad_left, dilation_h, dilation_w, kernel_h, kernel_w, out_h, out_w,
                   columns, worker, workers):
    """:func:`unfold` for narrow output rows, one job per (image, channel) plane. Copying a
    run per output row cost ~100 cycles of loop set-up and index arithmetic for rows of 2-8
    elements (8 x 512 x 2 x 2, 3x3 padding 1: ~1 ms for 147K elements); here each plane is
    copied into a zero-bordered scratch plane and every tap's row of ``cols`` is a gather
    through a table of offsets in it, tabulated once per call: unsigned and never in the
    padding, so the loop has no branch and no index wrapping, and vectorises."""
    taps = kernel_h * kernel_w
    positions = out_h * out_w
    rows = max(pad_top + height, (out_h - 1) * stride_h + (kernel_h - 1) * dilation_h + 1)
    wide = max(pad_left + width, (out_w - 1) * stride_w + (kernel_w - 1) * dilation_w + 1)
    padded = np.zeros(rows * wide, dst.dtype)  # only the input's part is rewritten
    offsets = np.empty(taps * positions, np.uint64)
    for tap in range(taps):
        r, s = tap // kernel_w, tap % kernel_w
        for i in range(out_h):
            for j in range(out_w):
                offsets[tap * positions + i * out_w + j] = \
                    (i * stride_h + r * dilation_h) * wide + j * stride_w + s * dilation_w
    my_first, my_stop = share(worker, workers, n_batch * channels)
    for job in range(my_first, my_stop):
        n = job // channels
        for y in range(height):
            at = (pad_top + y) * wide + pad_left
            copy1d(padded[at:at + width], src[(job * height + y) * width:])
        first = (job - n * channels) * taps * columns + n * positions
        for tap in range(taps):
            run = dst[first + tap * columns:first + tap * columns + positions]
            table = offsets[tap * positions:(tap + 1) * positions]
            for p in range(positions):
                run[p] = padded[table[p]]


@njit(inline="always")
def _fill_zero(dst, start, count):
    """dst[start + j] = 0 for j < count (unsigned indices: see :func:`_copy_strided`)."""
    start = np.uint64(start)
    for j in range(np.uint64(count)):
        dst[start + j] = 0


@njit(inline="always")
def _copy_strided(dst, start, src, first, step, count):
    """dst[start + j] = src[first + step * j] for j < count. Unsigned indices: Numba wraps
    negative signed ones around, a compare and select per access that keeps LLVM from
    vectorising; stride 1 has a loop of its own, which LLVM vectorises."""
    start, first = np.uint64(start), np.uint64(first)
    if step == 1:
        for j in range(np.uint64(count)):
            dst[start + j] = src[first + j]
    elif step == 2:  # a constant stride: LLVM deinterleaves vectors instead of gathering
        for j in range(np.uint64(count)):
            dst[start + j] = src[first + np.uint64(2) * j]
    else:
        step = np.uint64(step)
        for j in range(np.uint64(count)):
            dst[start + j] = src[first + step * j]


@parallel_kernel
def images_first(product, out, worker, workers):
    """out[n, k, p] = product[k, n * P + p]: (K, N * P) to (N, K, P), a row per job."""
    n_batch, channels, positions = out.shape
    my_first, my_stop = share(worker, workers, n_batch * channels)
    for job in range(my_first, my_stop):
        n, k = job // channels, job % channels
        src = product[k, n * positions:(n + 1) * positions]
        dst = out[n, k]
        for p in range(positions):
            dst[p] = src[p]
    return 0


@parallel_kernel
def vector_products(x2, w2, bias, out2, post, worker, workers):
    """out2[n, k] = bias[k] + w2[k] . x2[n]: a 1x1 convolution of 1x1 images (the
    squeeze-and-excitation layers of MobileNet-v3 and EfficientNet) and ``linear`` on a
    few rows (``activations.OWN_PRODUCT_MIN_ROWS``), bound by reading the weights once.

    Each output is a dot product over contiguous rows, which LLVM vectorises; the
    register-tiled product would pad every one-column image to a whole vector of columns
    and copy each tile through its edge buffers (measured: 48 -> 1152 channels at batch
    1, 89 us a call against torch's 16 us, most of it those copies). Share ``worker``
    takes one contiguous run of output channels, four rows of w2 at a time against each
    image: rows dealt out one by one to alternate shares, each share read every other
    2-4 KiB of the weights, which the hardware prefetcher follows badly, and one row at
    a time read each image once per output (AVX-512, 2 threads, 512 -> 1000: 37 us,
    so 17 us; torch 16).
    x2: (N, C); w2: (K, C); out2: (N, K); post: the epilogue of each output.
    """
    batch, channels = x2.shape
    outputs = w2.shape[0]
    zero = x2.dtype.type(0)
    kind, low, high = 0, zero, zero
    if post is not None:
        kind, low, high = int(post[0]), x2.dtype.type(post[1]), x2.dtype.type(post[2])
    first = outputs * worker // workers
    last = outputs * (worker + 1) // workers
    for k in range(first, last, 4):
        rows = min(4, last - k)
        for n in range(batch):
            image = x2[n]
            if rows == 4:
                r0, r1, r2, r3 = w2[k], w2[k + 1], w2[k + 2], w2[k + 3]
                t0 = t1 = t2 = t3 = zero
                for c in range(channels):
                    v = image[c]
                    t0 += r0[c] * v
                    t1 += r1[c] * v
                    t2 += r2[c] * v
                    t3 += r3[c] * v
                _store_product(out2, n, k, t0, bias, post, kind, low, high)
                _store_product(out2, n, k + 1, t1, bias, post, kind, low, high)
                _store_product(out2, n, k + 2, t2, bias, post, kind, low, high)
                _store_product(out2, n, k + 3, t3, bias, post, kind, low, high)
            else:
                for j in range(k, k + rows):
                    row = w2[j]
                    total = zero
                    for c in range(channels):
                        total += row[c] * image[c]
                    _store_product(out2, n, j, total, bias, post, kind, low, high)
    return 0


@njit(inline="always")
def _store_product(out2, n, k, total, bias, post, kind, low, high):
    """out2[n, k] = the epilogue of total + bias[k]."""
    if post is None:
        out2[n, k] = total + bias[k]
    else:
        out2[n, k] = finish_value(total + bias[k], kind, low, high)


@parallel_kernel
def pointwise_conv2d(x3, w2, bias, out3, groups, block_rows, block_cols, post, worker,
                     workers):
    """out3[n, k] = w2[k] @ x3[n, channels of k's group] + bias[k]: a 1x1, stride-1,
    unpadded convolution, where each image already is the (C, H*W) matrix and the output
    the (K, OH*OW) one, so nothing is copied (strided 1x1 layers run it on the pixels
    they read, ``layout.subsample``).

    x3 (N, C, P); w2 (K, C/groups); bias (K,); out3 (N, K, P); post: the epilogue
    (``cpu.epilogue``) each output row gets once written. The jobs are blocks of
    ``block_rows`` output channels by ``block_cols`` positions of one image and group
    (see :func:`pointwise_jobs`); share ``worker`` takes jobs worker, worker + workers, ...
    """
    n_batch, _, positions = x3.shape
    out_channels, cin = w2.shape
    kg = out_channels // groups
    row_blocks = -(-kg // block_rows)
    col_blocks = -(-positions // block_cols)
    per_matrix = row_blocks * col_blocks
    work = np.empty(workspace_size(cin), dtype=x3.dtype)
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(x3.itemsize)
    my_first, my_stop = share(worker, workers, n_batch * groups * per_matrix)
    for job in range(my_first, my_stop):
        matrix = job // per_matrix
        n, g = matrix // groups, matrix % groups
        k0 = g * kg + (job % per_matrix) // col_blocks * block_rows
        k1 = min(k0 + block_rows, (g + 1) * kg)
        j0 = (job % col_blocks) * block_cols
        j1 = min(j0 + block_cols, positions)
        matmul(w2[k0:k1], x3[n, g * cin:(g + 1) * cin, j0:j1], out3[n, k0:k1, j0:j1], work)
        for k in range(k0, k1):
            row = out3[n, k, j0:j1]  # typed contiguous (a row of a 2-D block is not): vectorised
            if post is None:
                b = bias[k]
                for q in range(row.shape[0]):
                    row[q] += b
            else:
                biased_row(row, row, bias[k], post)
        if post is not None:
            finish_silu(out3[n], k0, k1, j0, j1, post, scaled, bits)
    return 0


#: Jobs per thread a pointwise layer is cut into when its images are too few to share
#: (a ragged last job then idles a thread for a quarter of a job, not a whole one).
POINTWISE_JOBS_PER_THREAD = 4


def pointwise_jobs(spec, itemsize, threads):
    """(block_rows, block_cols) of :func:`pointwise_conv2d`'s jobs: whole (K/groups, P)
    products when there are enough images and groups for every thread, else each cut
    into about ``POINTWISE_JOBS_PER_THREAD * threads`` blocks in all, in whole register
    tiles (MR rows, NV vectors of columns). Every job reads all of its operand along the
    dimension it does not cut, so the cut goes along the larger output dimension: output
    channels for small images (a 7x7 image's 49 positions by 2048 channels), positions
    for large ones.
    """
    return product_jobs(spec.out_channels_per_group, spec.out_height * spec.out_width,
                        spec.batch * spec.groups, itemsize, threads)


def product_jobs(rows, cols, matrices, itemsize, threads):
    """:func:`pointwise_jobs` for ``matrices`` products of (rows, cols) outputs."""
    wanted = -(-POINTWISE_JOBS_PER_THREAD * threads // matrices)
    if matrices >= threads * POINTWISE_JOBS_PER_THREAD or wanted <= 1:
        return rows, cols
    panel = NV * (VECTOR_BYTES // itemsize)
    row_tiles, col_panels = -(-rows // MR), -(-cols // panel)
    if rows >= cols:
        row_cuts = min(wanted, row_tiles)
        col_cuts = min(col_panels, -(-wanted // row_cuts))
    else:
        col_cuts = min(wanted, col_panels)
        row_cuts = min(row_tiles, -(-wanted // col_cuts))
    return -(-row_tiles // row_cuts) * MR, -(-col_panels // col_cuts) * panel


def _vector_products(spec, x, weight, bias, post, shares=None):
    """The vector-product kernel on the spec's arrays -> (N, K)."""
    out = np.empty((spec.batch, spec.out_channels), x.dtype)
    vector_products(x.reshape(spec.batch, spec.in_channels),
                    weight.reshape(spec.out_channels, spec.in_channels), bias, out, post,
                    workers=shares)
    return out


def _pointwise(spec, x, weight, bias, blocks, post):
    """The pointwise kernel on images of the output's size (x (N, C, OH, OW)), in jobs of
    ``blocks`` = (block_rows, block_cols) -> (N, K, OH, OW)."""
    positions = spec.out_height * spec.out_width
    out = new_output(spec, x.dtype)
    pointwise_conv2d(x.reshape(spec.batch, spec.in_channels, positions),
                     weight.reshape(spec.out_channels, spec.in_channels_per_group), bias,
                     out.reshape(spec.batch, spec.out_channels, positions), spec.groups,
                     *blocks, post)
    return out


def prepare(spec, post=NO_EPILOGUE):
    """:func:`run` for ``spec`` as a function of (x, weight, bias), for repeated calls:
    the 1x1 kernels, the fastest (squeeze-and-excitation layers cost as much Python as
    arithmetic), skip the choice of kernel and, per thread count, of their jobs."""
    kernel = gemm_kernel(spec)
    if kernel == "vector_products":
        shares = 1 if spec.flops // 2 < SMALL_WORK else None  # (the small-work rule)

        def vector_run(x, weight, bias):  # (N, K): the planner gives it the output's shape
            return _vector_products(spec, x, weight, bias, post, shares)

        vector_run.sizes_shares = True
        return vector_run
    if kernel == "pointwise" and spec.is_pointwise:
        jobs = {}  # threads -> (block_rows, block_cols)

        def pointwise_run(x, weight, bias):
            threads = numba.get_num_threads()
            blocks = jobs.get(threads)
            if blocks is None:
                blocks = jobs[threads] = pointwise_jobs(spec, x.itemsize, threads)
            return _pointwise(spec, x, weight, bias, blocks, post)

        return pointwise_run
    return lambda x, weight, bias: run(spec, x, weight, bias, post)


def run(spec, x, weight, bias, post=NO_EPILOGUE):
    """Run the GEMM algorithm for ``spec`` with the kernel :func:`registry.gemm_kernel` names;
    ``post``, the epilogue (:mod:`numbaconv.epilogue`), applied as outputs are written."""
    kernel = gemm_kernel(spec)
    if kernel == "vector_products":
        return _vector_products(spec, x, weight, bias, post).reshape(
            spec.batch, spec.out_channels, spec.out_height, spec.out_width)
    if kernel == "pointwise":
        if not spec.is_pointwise:  # strided: the pixels it reads, then a pointwise layer
            sampled = scratch("gemm_subsampled", (spec.batch, spec.in_channels,
                                                  spec.out_height, spec.out_width), x.dtype)
            subsample(x, spec.stride_h, spec.stride_w, sampled)
            x = sampled
        return _pointwise(spec, x, weight, bias,
                          pointwise_jobs(spec, x.itemsize, numba.get_num_threads()), post)
    if kernel == "tap_tiles":
        return channels_last.run(spec, x, weight, bias, post, numba.get_num_threads())
    out = new_output(spec, x.dtype)
    if kernel == "im2col_whole":
        depth = spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
        positions = spec.out_height * spec.out_width
        columns = gemm_whole_columns(spec)  # N * OH * OW rounded up to whole vectors
        # kept for the weight gradient in a training step (step_columns), else scratch
        kept = step_columns.columns_for(x, spec, (1, spec.groups * depth, columns)) \
            if step_columns.keeping() and columns == spec.batch * positions \
            and weight_grad_reads_im2col(spec) else None
        cols = kept if kept is not None else \
            scratch("gemm_columns", (1, spec.groups * depth, columns), x.dtype)
        cols[0, :, spec.batch * positions:] = 0  # the rounding: computed, never read
        unfold(x, spec.stride_h, spec.stride_w, spec.pad_top, spec.pad_left, spec.dilation_h,
               spec.dilation_w, spec.kernel_height, spec.kernel_width, spec.out_height,
               spec.out_width, cols[0])
        # One product for the whole batch (its weights read once, not once per image),
        # into (K, columns): the output itself for one image whose rows need no rounding,
        # else a buffer.
        in_place = columns == positions
        product = out.reshape(1, spec.out_channels, positions) if in_place else \
            scratch("gemm_product", (1, spec.out_channels, columns), x.dtype)
        block_rows, block_cols = product_jobs(spec.out_channels_per_group, columns,
                                              spec.groups, x.itemsize,
                                              numba.get_num_threads())
        pointwise_conv2d(cols, weight.reshape(spec.out_channels, depth), bias, product,
                         spec.groups, block_rows, block_cols, post)
        if not in_place:
            images_first(product[0], out.reshape(spec.batch, spec.out_channels, positions))
        return out
    xph = phase_split_input(spec, x, "gemm_input")
    block_rows = gemm_block_rows(spec)
    blocks = spec.batch * spec.groups * -(-spec.out_height // block_rows)
    gemm_conv2d(xph, weight, bias, out, spec.dilation_h, spec.dilation_w, spec.groups,
                block_rows, post, workers=blocks)
    return out
