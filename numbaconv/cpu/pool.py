"""Max and average pooling and max unpooling on the CPU: whole image planes per share.

Pooling is memory-bound (a few operations per value read), so the kernels run each
(n, c) plane on one thread with the window loops innermost; torch's CPU rules are
followed operation for operation: a window's maximum takes a NaN as soon as it meets
one (and keeps the index of the last NaN), padding never wins a maximum, and an average
divides as ``count_include_pad``/``divisor_override`` say.
"""

import math

import numpy as np

from .dispatch import parallel_kernel


@parallel_kernel
def max_pool2d_kernel(x, out, indices, kh, kw, sh, sw, ph, pw, dh, dw, worker, workers):
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    for plane in range(worker, x.shape[0] * channels, workers):
        n, c = plane // channels, plane % channels
        for oy in range(out_h):
            y0 = oy * sh - ph
            while y0 < 0:  # first row inside the input (torch's hstart)
                y0 += dh
            y1 = min(oy * sh - ph + (kh - 1) * dh + 1, height)
            for ox in range(out_w):
                x0 = ox * sw - pw
                while x0 < 0:
                    x0 += dw
                x1 = min(ox * sw - pw + (kw - 1) * dw + 1, width)
                best = -np.inf
                best_index = y0 * width + x0
                for y in range(y0, y1, dh):
                    for z in range(x0, x1, dw):
                        value = x[n, c, y, z]
                        if value > best or math.isnan(value):
                            best = value
                            best_index = y * width + z
                out[n, c, oy, ox] = best
                indices[n, c, oy, ox] = best_index
    return 0


@parallel_kernel
def avg_pool2d_kernel(x, out, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override,
                      worker, workers):
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    for plane in range(worker, x.shape[0] * channels, workers):
        n, c = plane // channels, plane % channels
        for oy in range(out_h):
            y0 = oy * sh - ph
            y1 = min(y0 + kh, height + ph)
            for ox in range(out_w):
                x0 = ox * sw - pw
                x1 = min(x0 + kw, width + pw)
                pool_size = (y1 - y0) * (x1 - x0)  # the window within the padded input
                ya, yb = max(y0, 0), min(y1, height)
                xa, xb = max(x0, 0), min(x1, width)
                if ya >= yb or xa >= xb:
                    out[n, c, oy, ox] = 0
                    continue
                total = 0.0  # float64 sums: no drift on large windows
                for y in range(ya, yb):
                    for z in range(xa, xb):
                        total += x[n, c, y, z]
                if divisor_override != 0:
                    factor = divisor_override
                elif count_include_pad:
                    factor = pool_size
                else:
                    factor = (yb - ya) * (xb - xa)
                out[n, c, oy, ox] = total / factor
    return 0


@parallel_kernel
def max_unpool2d_kernel(x, indices, out, worker, workers):
    """out.flat-per-plane[indices] = x; returns how many indices fall outside the plane."""
    channels = x.shape[1]
    plane_size = out.shape[2] * out.shape[3]
    invalid = 0
    for plane in range(worker, x.shape[0] * channels, workers):
        n, c = plane // channels, plane % channels
        flat = out[n, c].reshape(plane_size)  # out is contiguous: a view
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                index = indices[n, c, i, j]
                if 0 <= index < plane_size:
                    flat[index] = x[n, c, i, j]
                else:
                    invalid += 1
    return invalid

