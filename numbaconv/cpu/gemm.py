"""Convolution as matrix products (im2col + BLAS) on the CPU.

The output is cut into blocks of one image, one group and a few output rows.
Each Numba thread takes its share of the blocks and, per block, unfolds the input
patches into a (C/groups * kH * kW, columns) matrix, multiplies the group's weight
matrix (K/groups, C/groups * kH * kW) by it with one single-threaded BLAS call, and
writes the result (plus bias) into the output. The unfolded block stays in the
core's cache, and BLAS runs near the machine's peak, which makes this the fast path
for dense layers Winograd cannot take (1x1, strided, dilated, large kernels).
"""

import numba
import numpy as np
from numba import njit, prange

from ..registry import gemm_block_rows
from ..config import JIT_PARALLEL
from .blas import single_threaded_blas
from .layout import zero_pad


@njit(**JIT_PARALLEL)
def gemm_conv2d(xpad, weight, bias, out, stride_h, stride_w, dilation_h, dilation_w, groups,
                block_rows, workers):
    """out = weight (*) xpad + bias, one (image, group, block of output rows) at a time.

    xpad: zero-padded input (N, C, Hp, Wp); weight (K, C/groups, kH, kW); bias (K,);
    out (N, K, OH, OW). ``workers`` threads each own one unfolding buffer.
    """
    n_batch = xpad.shape[0]
    out_channels, cin, kernel_h, kernel_w = weight.shape
    out_h, out_w = out.shape[2], out.shape[3]
    kg = out_channels // groups
    taps = kernel_h * kernel_w
    depth = cin * taps
    wmats = weight.reshape(groups, kg, depth)
    blocks_per_plane = -(-out_h // block_rows)
    n_blocks = n_batch * groups * blocks_per_plane
    columns = block_rows * out_w
    for worker in prange(workers):
        cols = np.empty((depth, columns), dtype=xpad.dtype)
        result = np.empty((kg, columns), dtype=xpad.dtype)
        for block in range(worker, n_blocks, workers):
            i0 = (block % blocks_per_plane) * block_rows
            ng = block // blocks_per_plane
            g = ng % groups
            n = ng // groups
            rows = min(block_rows, out_h - i0)
            width = rows * out_w
            # Unfold: cols[(c, r, s), (i - i0) * OW + j] = xpad[n, g*cin + c, i*sh + r*dh, j*sw + s*dw]
            for row in range(depth):
                c = row // taps
                r = (row // kernel_w) % kernel_h
                col0 = (row % kernel_w) * dilation_w
                image = xpad[n, g * cin + c]
                dst = cols[row]
                for i in range(rows):
                    src = image[(i0 + i) * stride_h + r * dilation_h]
                    base = i * out_w
                    for j in range(out_w):
                        dst[base + j] = src[col0 + j * stride_w]
            if width == columns:
                np.dot(wmats[g], cols, result)
                res = result
            else:  # the last, shorter block (BLAS wants contiguous operands)
                res = np.empty((kg, width), dtype=xpad.dtype)
                np.dot(wmats[g], np.ascontiguousarray(cols[:, :width]), res)
            for k in range(kg):
                dst = out[n, g * kg + k].reshape(out_h * out_w)
                b = bias[g * kg + k]
                base = i0 * out_w
                for q in range(width):
                    dst[base + q] = res[k, q] + b
    return out


def run(spec, x, weight, bias):
    if spec.pad_top or spec.pad_bottom or spec.pad_left or spec.pad_right:
        x = zero_pad(x, spec.pad_top, spec.pad_bottom, spec.pad_left, spec.pad_right)
    out = np.empty((spec.batch, spec.out_channels, spec.out_height, spec.out_width), x.dtype)
    block_rows = gemm_block_rows(spec)
    blocks = spec.batch * spec.groups * -(-spec.out_height // block_rows)
    workers = min(numba.get_num_threads(), blocks)
    with single_threaded_blas():
        return gemm_conv2d(x, weight, bias, out, spec.stride_h, spec.stride_w, spec.dilation_h,
                           spec.dilation_w, spec.groups, block_rows, workers)
