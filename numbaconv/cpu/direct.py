"""Direct convolution on the CPU: the general kernel that runs every spec.

The input is zero padded and split by stride phase (``layout.pad_phase_split``), so
that for a fixed kernel tap the inputs of a block of output rows form one contiguous
run, on a grid ``Wq`` wide (the columns past the output width are computed and
dropped). Each job, one (image, output channel, block of rows), accumulates into an
L1-sized buffer with long unit-stride loops that LLVM vectorises; taps are fused in
threes along the kernel width (all nine for 3x3 kernels) so that each pass over the
buffer does several multiply-adds per load and store of the accumulator.
"""

import numpy as np
from numba import njit, prange

from ..config import JIT_PARALLEL
from ..registry import direct_block_rows
from .layout import phase_split_input


@njit(**JIT_PARALLEL)
def direct_conv2d(xph, weight, bias, out, dilation_h, dilation_w, groups, block_rows):
    """out[n, k] = bias[k] + sum_{c, r, s} weight[k, c, r, s] * padded[n, g*Cg + c, ...].

    xph: (N, C, sh, sw, Hq, Wq) from ``pad_phase_split``; weight: (K, C/groups, kH, kW);
    bias: (K,); out: (N, K, OH, OW), written in full.
    """
    n_batch, _, stride_h, stride_w, rows_q, cols_q = xph.shape
    out_channels, cin, kernel_h, kernel_w = weight.shape
    out_h, out_w = out.shape[2], out.shape[3]
    kg = out_channels // groups
    blocks = -(-out_h // block_rows)
    for job in prange(n_batch * out_channels * blocks):
        oh0 = (job % blocks) * block_rows
        k = (job // blocks) % out_channels
        n = job // (blocks * out_channels)
        nrows = min(block_rows, out_h - oh0)
        length = (nrows - 1) * cols_q + out_w
        acc = np.zeros(length, dtype=out.dtype)
        c0 = (k // kg) * cin
        for c in range(cin):
            planes = xph[n, c0 + c]
            w = weight[k, c]
            if kernel_h == 3 and kernel_w == 3:
                # All nine taps in one pass: the accumulator is loaded and stored once.
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
                continue
            for r in range(kernel_h):
                s = 0
                while s + 3 <= kernel_w:
                    f0 = _tap(planes, r, s, oh0, dilation_h, dilation_w, length)
                    f1 = _tap(planes, r, s + 1, oh0, dilation_h, dilation_w, length)
                    f2 = _tap(planes, r, s + 2, oh0, dilation_h, dilation_w, length)
                    w0, w1, w2 = w[r, s], w[r, s + 1], w[r, s + 2]
                    for i in range(length):
                        acc[i] += w0 * f0[i] + w1 * f1[i] + w2 * f2[i]
                    s += 3
                while s < kernel_w:
                    f0 = _tap(planes, r, s, oh0, dilation_h, dilation_w, length)
                    w0 = w[r, s]
                    for i in range(length):
                        acc[i] += w0 * f0[i]
                    s += 1
        b = bias[k]
        for i in range(nrows):
            dst = out[n, k, oh0 + i]
            for j in range(out_w):
                dst[j] = acc[i * cols_q + j] + b
    return out


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


def run(spec, x, weight, bias):
    """Run the direct algorithm for ``spec`` (zero padding still to apply) -> (N, K, OH, OW)."""
    xph = phase_split_input(spec, x, "direct_input")
    out = np.empty((spec.batch, spec.out_channels, spec.out_height, spec.out_width), x.dtype)
    return direct_conv2d(xph, weight, bias, out, spec.dilation_h, spec.dilation_w, spec.groups,
                         direct_block_rows(spec))
