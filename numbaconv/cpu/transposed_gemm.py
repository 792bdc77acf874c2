"""Transposed convolution as one matrix product and a scatter-add (GEMM + col2im) on the CPU.

out[n, k, i * s - p + r * d, j * s - p + t * d] += w[c, k, r, t] * x[n, c, i, j]: every
input pixel, multiplied by the (K * kH * kW, C) matrix of the weights, gives the
contributions of its window to the output; adding them where they land is the whole
transposed convolution, with no zeros inserted and no multiply wasted. The product runs
on the register-tiled :func:`.microkernel.matmul` with the input pixels of all images as
columns (a DCGAN layer's 4x4 images give 16 columns each, too few for a product of
their own), a block of output channels and of columns per job; the job then adds its
block of contributions into the output, which holds the bias beforehand. Jobs never
share an output: a block of columns holds whole images whenever windows overlap
(kernel larger than the stride), and the output channels of two jobs differ otherwise.
"""

import numpy as np
from numba import njit

from .dispatch import parallel_kernel, share
from ..isa import MR
from .microkernel import matmul, workspace_size


@parallel_kernel
def fill_channels(out, bias, worker, workers):
    """out[n, k] = bias[k] everywhere, one (n, k) plane per job."""
    n_batch, channels = out.shape[0], out.shape[1]
    my_first, my_stop = share(worker, workers, n_batch * channels)
    for plane in range(my_first, my_stop):
        flat = out[plane // channels, plane % channels].reshape(out.shape[2] * out.shape[3])
        b = bias[plane % channels]
        for q in range(flat.shape[0]):
            flat[q] = b
    return 0


@parallel_kernel
def transposed_gemm(xt, wt, out, in_h, in_w, groups, kh, kw, sh, sw, ph, pw, dh, dw,
                    block_rows, block_cols, worker, workers):
    """out += the transposed convolution of the input (see the module docstring).

    xt (C, N * H * W): the input, channel-major (its columns are the pixels of image 0,
    then image 1...); wt (K * kH * kW, C / groups): row (k, r, t) holds w[:, k, r, t] of
    k's group; out (N, K, OH, OW), already holding the bias. A job is a block of
    ``block_rows`` output channels of one group by ``block_cols`` columns.
    """
    cin, positions = xt.shape
    out_channels, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    taps = kh * kw
    kg, cg = out_channels // groups, cin // groups
    plane = in_h * in_w
    row_blocks = -(-kg // block_rows)
    col_blocks = -(-positions // block_cols)
    result = np.empty((block_rows * taps, block_cols), dtype=xt.dtype)
    work = np.empty(workspace_size(cg), dtype=xt.dtype)
    # Flat views, indexed by offsets below: views of each row cost more than its work.
    out_flat, result_flat = out.reshape(out.size), result.reshape(result.size)
    my_first, my_stop = share(worker, workers, groups * row_blocks * col_blocks)
    for job in range(my_first, my_stop):
        g = job // (row_blocks * col_blocks)
        k0 = g * kg + (job // col_blocks) % row_blocks * block_rows
        k1 = min(k0 + block_rows, (g + 1) * kg)
        p0 = (job % col_blocks) * block_cols
        p1 = min(p0 + block_cols, positions)
        contributions = result[:(k1 - k0) * taps, :p1 - p0]
        matmul(wt[k0 * taps:k1 * taps], xt[g * cg:(g + 1) * cg, p0:p1], contributions, work)
        for kk in range(k1 - k0):
            for r in range(kh):
                for t in range(kw):
                    src = (kk * taps + r * kw + t) * block_cols  # its row of contributions
                    shift = t * dw - pw  # output column of pixel j: j * sw + shift
                    # the pixels of a whole row whose output column is inside [0, OW)
                    full_a = min(in_w, max(0, -(shift // sw)))
                    full_b = min(in_w, max(full_a, -(-(out_w - shift) // sw)))
                    n, i, j0 = p0 // plane, (p0 % plane) // in_w, p0 % in_w
                    p = p0
                    while p < p1:  # one input row (or what of it the block holds) at a time
                        run = min(in_w - j0, p1 - p)
                        oy = i * sh - ph + r * dh
                        if 0 <= oy < out_h:
                            if j0 == 0 and run == in_w:
                                ja, jb = full_a, full_b
                            else:
                                first = j0 * sw + shift
                                ja = min(run, max(0, -(first // sw)))
                                jb = min(run, max(ja, -(-(out_w - first) // sw)))
                            row = ((n * out_channels + k0 + kk) * out_h + oy) * out_w
                            _add_strided(out_flat, row + (j0 + ja) * sw + shift, sw,
                                         result_flat, src + p - p0 + ja, jb - ja)
                        p += run
                        j0 = 0
                        i += 1
                        if i == in_h:
                            i = 0
                            n += 1
    return 0


@njit(inline="always")
def _add_strided(dst, first, step, src, start, count):
    """dst[first + step * j] += src[start + j] for j < count. Unsigned indices: Numba
    wraps negative signed ones around, a compare and select per access."""
    first, step, start = np.uint64(first), np.uint64(step), np.uint64(start)
    for j in range(np.uint64(count)):
        dst[first + step * j] += src[start + j]


def transposed_jobs(batch, in_h, in_w, out_channels_per_group, groups, taps, overlapping,
                    itemsize, threads):
    """(block_rows, block_cols) of :func:`transposed_gemm`: blocks of whole images when
    windows overlap, else of ~512 columns; output channels cut so that there are about
    four jobs per thread and a job's contributions stay within 2 MiB."""
    plane = in_h * in_w
    positions = batch * plane
    if overlapping:
        images = max(1, min(batch, 512 // max(1, plane)))
        block_cols = images * plane
        col_blocks = -(-positions // block_cols)
    else:  # even blocks: a short last one would leave its thread idle
        col_blocks = -(-positions // 512)
        block_cols = -(-positions // col_blocks)
    wanted = -(-4 * threads // (col_blocks * groups))
    rows = max(1, -(-out_channels_per_group // wanted))
    rows = -(-rows // MR) * MR if rows > MR else rows
    most = max(1, (2 << 20) // (taps * block_cols * itemsize))
    return max(1, min(rows, most, out_channels_per_group)), block_cols


@parallel_kernel
def scatter_positions(contributions, bias, out, in_h, in_w, kh, kw, sh, sw, ph, pw, dh, dw,
                      block, worker, workers):
    """out[n, k] = bias[k] + the sum of contributions[(n, i, j), (k, r, t)] over the
    pixels (i, j) and taps (r, t) that land at (i * sh - ph + r * dh, j * sw - pw + t *
    dw) inside the output: the scatter-add of a positions-major product (a row of every
    output channel's and tap's contributions per input pixel). A job is an image's
    ``block`` output channels: it sets its planes to the bias (no pass of its own over
    the output first), then reads one contiguous run of each of its pixels' rows, and its
    planes stay in L1. contributions (N * H * W, K * kH * kW); out (N, K, OH, OW). For
    small maps (few pixels)."""
    n_batch, channels, out_h, out_w = out.shape
    taps = kh * kw
    blocks = -(-channels // block)
    my_first, my_stop = share(worker, workers, n_batch * blocks)
    for job in range(my_first, my_stop):
        n, k0 = job // blocks, job % blocks * block
        k1 = min(channels, k0 + block)
        for k in range(k0, k1):
            plane = out[n, k].reshape(out_h * out_w)
            b = bias[k]
            for q in range(out_h * out_w):
                plane[q] = b
        for i in range(in_h):
            for j in range(in_w):
                row = contributions[(n * in_h + i) * in_w + j]
                for r in range(kh):
                    oy = i * sh - ph + r * dh
                    if 0 <= oy < out_h:
                        for t in range(kw):
                            ox = j * sw - pw + t * dw
                            if 0 <= ox < out_w:
                                for k in range(k0, k1):
                                    out[n, k, oy, ox] += row[k * taps + r * kw + t]
    return 0
