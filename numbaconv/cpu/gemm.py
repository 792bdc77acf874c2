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

from ..registry import gemm_block_rows
from .layout import new_output, phase_split_input, subsample
from .workspace import scratch
from .dispatch import parallel_kernel
from .microkernel import MR, NV, VECTOR_BYTES, matmul, workspace_size


@parallel_kernel
def gemm_conv2d(xph, weight, bias, out, dilation_h, dilation_w, groups, block_rows,
                worker, workers):
    """out = weight (*) input + bias, one (image, group, block of output rows) at a time.

    xph: zero-padded input split by stride phase, (N, C, sh, sw, Hq, Wq) from
    ``layout.pad_phase_split`` (so that every unfolded row is a contiguous copy);
    weight (K, C/groups, kH, kW); bias (K,); out (N, K, OH, OW). Share ``worker`` takes
    blocks worker, worker + workers, ... with one unfolding buffer of its own.
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
    image_is_matrix = (taps == 1 and groups == 1 and block_rows == out_h and stride_h == 1
                       and stride_w == 1 and xph.shape[4] == out_h and xph.shape[5] == out_w)
    cols = np.empty((depth, columns), dtype=xph.dtype)
    result = np.empty((kg, columns), dtype=xph.dtype)
    work = np.empty(workspace_size(depth), dtype=xph.dtype)
    for block in range(worker, n_blocks, workers):
        i0 = (block % blocks_per_plane) * block_rows
        ng = block // blocks_per_plane
        g = ng % groups
        n = ng // groups
        rows = min(block_rows, out_h - i0)
        width = rows * out_w
        if image_is_matrix:
            # 1x1, stride 1, unpadded, one group, whole image: x[n] already is the
            # (C, H*W) matrix and out[n] the (K, OH*OW) one: no copies.
            plane_out = out[n].reshape(out_channels, out_h * out_w)
            matmul(wmats[0], xph[n].reshape(cin, out_h * out_w), plane_out, work)
            for k in range(out_channels):
                plane_out[k] += bias[k]
            continue
        # Unfold: cols[(c, r, s), (i - i0) * OW + j] = padded[n, g*cin + c, i*sh + r*dh, j*sw + s*dw]
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
            dst = out[n, g * kg + k].reshape(out_h * out_w)
            b = bias[g * kg + k]
            base = i0 * out_w
            for q in range(width):
                dst[base + q] = res[k, q] + b
    return 0


@parallel_kernel
def vector_products(x2, w2, bias, out2, worker, workers):
    """out2[n, k] = bias[k] + w2[k] . x2[n]: a 1x1 convolution of 1x1 images (the
    squeeze-and-excitation layers of MobileNet-v3 and EfficientNet), output channels
    worker, worker + workers, ...

    Each output is one dot product over contiguous rows, which LLVM vectorises; the
    register-tiled product would pad every one-column image to a whole vector of columns
    and copy each tile through its edge buffers (measured: 48 -> 1152 channels at batch
    1, 89 us a call against torch's 16 us, most of it those copies).
    x2: (N, C); w2: (K, C); out2: (N, K).
    """
    batch, channels = x2.shape
    for k in range(worker, w2.shape[0], workers):
        row = w2[k]
        for n in range(batch):
            image = x2[n]
            total = row[0] * image[0]
            for c in range(1, channels):
                total += row[c] * image[c]
            out2[n, k] = total + bias[k]
    return 0


@parallel_kernel
def pointwise_conv2d(x3, w2, bias, out3, groups, block_rows, block_cols, worker, workers):
    """out3[n, k] = w2[k] @ x3[n, channels of k's group] + bias[k]: a 1x1, stride-1,
    unpadded convolution, where each image already is the (C, H*W) matrix and the output
    the (K, OH*OW) one, so nothing is copied (strided 1x1 layers run it on the pixels
    they read, ``layout.subsample``).

    x3 (N, C, P); w2 (K, C/groups); bias (K,); out3 (N, K, P). The jobs are blocks of
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
    for job in range(worker, n_batch * groups * per_matrix, workers):
        matrix = job // per_matrix
        n, g = matrix // groups, matrix % groups
        k0 = g * kg + (job % per_matrix) // col_blocks * block_rows
        k1 = min(k0 + block_rows, (g + 1) * kg)
        j0 = (job % col_blocks) * block_cols
        j1 = min(j0 + block_cols, positions)
        block = out3[n, k0:k1, j0:j1]
        matmul(w2[k0:k1], x3[n, g * cin:(g + 1) * cin, j0:j1], block, work)
        for k in range(k1 - k0):
            row = block[k]
            b = bias[k0 + k]
            for q in range(j1 - j0):
                row[q] += b
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
    rows, cols = spec.out_channels_per_group, spec.out_height * spec.out_width
    matrices = spec.batch * spec.groups
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


def run(spec, x, weight, bias):
    out = new_output(spec, x.dtype)
    if spec.is_vector_product:
        vector_products(x.reshape(spec.batch, spec.in_channels),
                        weight.reshape(spec.out_channels, spec.in_channels), bias,
                        out.reshape(spec.batch, spec.out_channels))
        return out
    if spec.is_unpadded_1x1:
        if not spec.is_pointwise:  # strided: the pixels it reads, then a pointwise layer
            sampled = scratch("gemm_subsampled", (spec.batch, spec.in_channels,
                                                  spec.out_height, spec.out_width), x.dtype)
            subsample(x, spec.stride_h, spec.stride_w, sampled)
            x = sampled
        positions = spec.out_height * spec.out_width
        block_rows, block_cols = pointwise_jobs(spec, x.itemsize, numba.get_num_threads())
        pointwise_conv2d(x.reshape(spec.batch, spec.in_channels, positions),
                         weight.reshape(spec.out_channels, spec.in_channels_per_group), bias,
                         out.reshape(spec.batch, spec.out_channels, positions), spec.groups,
                         block_rows, block_cols)
        return out
    xph = phase_split_input(spec, x, "gemm_input")
    block_rows = gemm_block_rows(spec)
    blocks = spec.batch * spec.groups * -(-spec.out_height // block_rows)
    gemm_conv2d(xph, weight, bias, out, spec.dilation_h, spec.dilation_w, spec.groups,
                block_rows, workers=blocks)
    return out
