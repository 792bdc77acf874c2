"""Convolution as a matrix product (im2col + BLAS) on the CPU.

For each group the patches of a chunk of images are unfolded into a matrix
``cols`` (C/groups * kH * kW, images * OH * OW) and multiplied by the weight matrix
(K/groups, C/groups * kH * kW) in one BLAS call. BLAS runs near the machine's peak,
which makes this the fastest path for dense layers that Winograd cannot take
(1x1, strided, dilated, large kernels). A 1x1, stride-1, unpadded layer needs no
unfolding at all: each image already is the matrix.

BLAS is called from serial code only: inside a ``prange`` body OpenBLAS's threads
and Numba's would oversubscribe the cores.
"""

import numpy as np
from numba import njit, prange

from ..config import JIT, JIT_PARALLEL
from ..algorithms import gemm_images_per_chunk
from .layout import zero_pad

@njit(**JIT_PARALLEL)
def im2col(xpad, n0, n_images, c0, cin, kernel_h, kernel_w, stride_h, stride_w, dilation_h,
           dilation_w, out_h, out_w, cols):
    """cols[(c, r, s), (n, i, j)] = xpad[n0 + n, c0 + c, i*sh + r*dh, j*sw + s*dw]."""
    plane = out_h * out_w
    taps = kernel_h * kernel_w
    for row in prange(cin * taps):
        c = row // taps
        r = (row // kernel_w) % kernel_h
        s = row % kernel_w
        dst = cols[row]
        for n in range(n_images):
            for i in range(out_h):
                src = xpad[n0 + n, c0 + c, i * stride_h + r * dilation_h]
                base = n * plane + i * out_w
                col = s * dilation_w
                for j in range(out_w):
                    dst[base + j] = src[col + j * stride_w]


@njit(**JIT_PARALLEL)
def scatter_columns(result, n0, n_images, k0, bias, out):
    """out[n0 + n, k0 + k] = result[k, n-th image block] + bias[k0 + k]."""
    kg, _ = result.shape
    plane = out.shape[2] * out.shape[3]
    for job in prange(n_images * kg):
        n = job // kg
        k = job % kg
        dst = out[n0 + n, k0 + k].reshape(plane)
        src = result[k, n * plane:(n + 1) * plane]
        b = bias[k0 + k]
        for q in range(plane):
            dst[q] = src[q] + b


@njit(**JIT_PARALLEL)
def add_bias(out, bias):
    n_batch, channels = out.shape[0], out.shape[1]
    for job in prange(n_batch * channels):
        out[job // channels, job % channels] += bias[job % channels]


@njit(**JIT)
def gemm_conv2d(xpad, weight, bias, out, stride_h, stride_w, dilation_h, dilation_w, groups,
                chunk):
    n_batch, channels = xpad.shape[0], xpad.shape[1]
    out_channels, cin, kernel_h, kernel_w = weight.shape
    out_h, out_w = out.shape[2], out.shape[3]
    kg = out_channels // groups
    plane = out_h * out_w
    depth = cin * kernel_h * kernel_w
    wmat = weight.reshape(out_channels, depth)
    direct_1x1 = (kernel_h == 1 and kernel_w == 1 and stride_h == 1 and stride_w == 1
                  and xpad.shape[2] == out_h and xpad.shape[3] == out_w)
    cols = np.empty((depth, chunk * plane), dtype=xpad.dtype)
    result = np.empty((kg, chunk * plane), dtype=xpad.dtype)
    for n0 in range(0, n_batch, chunk):
        m = min(chunk, n_batch - n0)
        for g in range(groups):
            wg = np.ascontiguousarray(wmat[g * kg:(g + 1) * kg])
            if direct_1x1 and chunk == 1:
                # The image is already the (C, H*W) matrix; BLAS writes the output in place.
                xg = xpad[n0, g * cin:(g + 1) * cin].reshape(cin, plane)
                og = out[n0, g * kg:(g + 1) * kg].reshape(kg, plane)
                np.dot(wg, xg, og)
                continue
            im2col(xpad, n0, m, g * cin, cin, kernel_h, kernel_w, stride_h, stride_w,
                   dilation_h, dilation_w, out_h, out_w, cols)
            if m == chunk:
                np.dot(wg, cols, result)
                scatter_columns(result, n0, m, g * kg, bias, out)
            else:  # the last, partial chunk (BLAS wants contiguous operands)
                partial = np.empty((kg, m * plane), dtype=xpad.dtype)
                np.dot(wg, np.ascontiguousarray(cols[:, :m * plane]), partial)
                scatter_columns(partial, n0, m, g * kg, bias, out)
    if direct_1x1 and chunk == 1:
        add_bias(out, bias)
    return out


def run(spec, x, weight, bias):
    if spec.pad_top or spec.pad_bottom or spec.pad_left or spec.pad_right:
        x = zero_pad(x, spec.pad_top, spec.pad_bottom, spec.pad_left, spec.pad_right)
    out = np.empty((spec.batch, spec.out_channels, spec.out_height, spec.out_width), x.dtype)
    return gemm_conv2d(x, weight, bias, out, spec.stride_h, spec.stride_w, spec.dilation_h,
                       spec.dilation_w, spec.groups, gemm_images_per_chunk(spec))
