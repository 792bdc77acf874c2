"""Direct convolution on the CPU: the general kernel that runs every spec.

Layout: NCHW planes, one output row at a time. The innermost loop runs along the
output row, over a contiguous slice of the (phase-split, see ``layout.pad_phase_split``)
input row, so LLVM vectorises it whatever the stride or dilation. The output row is
accumulated in a small buffer that stays in L1 while the (channel, tap) loops stream
input rows past it.
"""

import numpy as np
from numba import njit, prange

from ..config import JIT_PARALLEL
from .layout import pad_phase_split


@njit(**JIT_PARALLEL)
def direct_conv2d(xp, weight, bias, out, stride_h, dilation_h, dilation_w, groups):
    """out[n, k] = bias[k] + sum_{c, r, s} weight[k, c, r, s] * padded[n, g*Cg + c, ...].

    xp: (N, C, Hp, stride_w, Wq) from ``pad_phase_split``; weight: (K, C/groups, kH, kW);
    bias: (K,) (zeros when the user gave none); out: (N, K, OH, OW), written in full.
    """
    n_batch = xp.shape[0]
    stride_w = xp.shape[3]
    out_channels, cin_per_group, kernel_h, kernel_w = weight.shape
    out_h, out_w = out.shape[2], out.shape[3]
    cout_per_group = out_channels // groups
    for job in prange(n_batch * out_channels):
        n = job // out_channels
        k = job % out_channels
        c0 = (k // cout_per_group) * cin_per_group
        acc = np.empty(out_w, dtype=out.dtype)
        for oh in range(out_h):
            acc[:] = 0
            for c in range(cin_per_group):
                for r in range(kernel_h):
                    ih = oh * stride_h + r * dilation_h
                    for s in range(kernel_w):
                        wv = weight[k, c, r, s]
                        col = s * dilation_w
                        row = xp[n, c0 + c, ih, col % stride_w]
                        off = col // stride_w
                        for ow in range(out_w):
                            acc[ow] += wv * row[off + ow]
            dst = out[n, k, oh]
            bk = bias[k]
            for ow in range(out_w):
                dst[ow] = acc[ow] + bk
    return out


def run(spec, x, weight, bias):
    """Run the direct algorithm for ``spec`` (zero padding still to apply) -> (N, K, OH, OW)."""
    phase_width = -(-spec.padded_width // spec.stride_w)
    xp = pad_phase_split(x, spec.pad_top, spec.pad_left, spec.padded_height, spec.stride_w,
                         phase_width)
    out = np.empty((spec.batch, spec.out_channels, spec.out_height, spec.out_width), x.dtype)
    return direct_conv2d(xp, weight, bias, out, spec.stride_h, spec.dilation_h,
                         spec.dilation_w, spec.groups)
