"""Data movement shared by the CPU algorithms: zero padding and phase splitting.

Kernels read a padded copy of the input so that their inner loops carry no bounds tests.
"""

import numpy as np
from numba import njit, prange

from ..config import JIT_PARALLEL


@njit(**JIT_PARALLEL)
def pad_phase_split(x, pad_top, pad_left, xph):
    """Fill xph (N, C, sh, sw, Hq, Wq) with the zero-padded x split by phase of the strides.

    ``xph[n, c, p, q, i, j] = padded[n, c, i * sh + p, j * sw + q]``, zero outside x.
    With the phases split, the input elements that consecutive outputs read sit next to
    each other for every stride and dilation, and a whole (rows x Wq) block of outputs
    reads one contiguous run per kernel tap: the direct kernel's loops vectorise.
    """
    n_batch, channels, height, width = x.shape
    stride_h, stride_w, rows, cols = xph.shape[2], xph.shape[3], xph.shape[4], xph.shape[5]
    for plane in prange(n_batch * channels):
        n = plane // channels
        c = plane % channels
        for p in range(stride_h):
            for q in range(stride_w):
                dst = xph[n, c, p, q]
                for i in range(rows):
                    ih = i * stride_h + p - pad_top
                    row = dst[i]
                    if ih < 0 or ih >= height:
                        row[:] = 0
                        continue
                    src = x[n, c, ih]
                    for j in range(cols):
                        iw = j * stride_w + q - pad_left
                        row[j] = src[iw] if 0 <= iw < width else 0


@njit(**JIT_PARALLEL)
def zero_pad(x, pad_top, pad_bottom, pad_left, pad_right):
    """``x`` (N, C, H, W) with zeros around it, as a new C-contiguous array."""
    n_batch, channels, height, width = x.shape
    out = np.empty(
        (n_batch, channels, height + pad_top + pad_bottom, width + pad_left + pad_right),
        dtype=x.dtype,
    )
    for plane in prange(n_batch * channels):
        n = plane // channels
        c = plane % channels
        dst = out[n, c]
        dst[:pad_top] = 0
        dst[pad_top + height:] = 0
        for h in range(height):
            row = dst[pad_top + h]
            row[:pad_left] = 0
            row[pad_left:pad_left + width] = x[n, c, h]
            row[pad_left + width:] = 0
    return out
