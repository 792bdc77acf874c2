"""Data movement shared by the CPU algorithms: zero padding and width phase splitting.

Kernels read a padded copy of the input so that their inner loops carry no bounds tests.
"""

import numpy as np
from numba import njit, prange

from ..config import JIT_PARALLEL


@njit(**JIT_PARALLEL)
def pad_phase_split(x, pad_top, pad_left, padded_height, stride_w, phase_width):
    """Zero-pad ``x`` (N, C, H, W) and split its columns by phase modulo ``stride_w``.

    Returns ``xp`` of shape (N, C, padded_height, stride_w, phase_width) with
    ``xp[n, c, h, p, j] = padded[n, c, h, j * stride_w + p]`` (zero outside ``x``).
    With the phases split, the columns a strided output row reads are contiguous, so
    the direct kernel's inner loop vectorises for every stride.
    """
    n_batch, channels, height, width = x.shape
    xp = np.empty((n_batch, channels, padded_height, stride_w, phase_width), dtype=x.dtype)
    for plane in prange(n_batch * channels):
        n = plane // channels
        c = plane % channels
        for h in range(padded_height):
            ih = h - pad_top
            for p in range(stride_w):
                row = xp[n, c, h, p]
                if ih < 0 or ih >= height:
                    row[:] = 0
                    continue
                for j in range(phase_width):
                    iw = j * stride_w + p - pad_left
                    row[j] = x[n, c, ih, iw] if 0 <= iw < width else 0
    return xp


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
