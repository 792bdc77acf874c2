"""Pooling on the GPU: max (with indices), average, adaptive average and max, unpooling.

One thread per output value, the (n, c) planes and the positions of a plane on one grid
axis (``i = ((n * C + c) * OH + oy) * OW + ox``): neighbouring threads read neighbouring
windows, so their reads of a window row coalesce. Windows, their clipping to the input
and torch's rules (the first largest value in row-major order, a NaN winning; the
average's divisor with or without the padding, or the override) are the CPU kernels'
(:mod:`numbaconv.cpu.pool`, :mod:`numbaconv.cpu.adaptive`). Sums accumulate in the
input's dtype, as torch's CUDA kernels do. Arrays are 4-D and C-contiguous (1-D pooling
runs on planes of height 1).
"""

from __future__ import annotations

import math

from numba import cuda


def _max_pool_source(dtype):
    def max_pool2d(x, out, indices, kh, kw, sh, sw, ph, pw, dh, dw, with_indices):
        i = cuda.grid(1)
        if i >= out.size:
            return
        height, width = x.shape[2], x.shape[3]
        rest, ox = divmod(i, out.shape[3])
        rest, oy = divmod(rest, out.shape[2])
        n, c = divmod(rest, out.shape[1])
        y0 = oy * sh - ph
        while y0 < 0:  # the first row inside the input
            y0 += dh
        y1 = min(oy * sh - ph + (kh - 1) * dh + 1, height)
        x0 = ox * sw - pw
        while x0 < 0:
            x0 += dw
        x1 = min(ox * sw - pw + (kw - 1) * dw + 1, width)
        best = dtype(-math.inf)
        where = y0 * width + x0
        for y in range(y0, y1, dh):
            for z in range(x0, x1, dw):
                value = x[n, c, y, z]
                if value > best or math.isnan(value):
                    best = value
                    where = y * width + z
        out[n, c, oy, ox] = best
        if with_indices:
            indices[n, c, oy, ox] = where
    return max_pool2d


def _avg_pool_source(dtype):
    def avg_pool2d(x, out, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
        i = cuda.grid(1)
        if i >= out.size:
            return
        height, width = x.shape[2], x.shape[3]
        rest, ox = divmod(i, out.shape[3])
        rest, oy = divmod(rest, out.shape[2])
        n, c = divmod(rest, out.shape[1])
        y0, x0 = oy * sh - ph, ox * sw - pw
        y1, x1 = min(y0 + kh, height + ph), min(x0 + kw, width + pw)
        pool_size = (y1 - y0) * (x1 - x0)  # the window within the padded input
        ya, yb, xa, xb = max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)
        total = dtype(0)
        for y in range(ya, yb):
            for z in range(xa, xb):
                total += x[n, c, y, z]
        if divisor_override != 0:
            factor = divisor_override
        elif count_include_pad:
            factor = pool_size
        else:
            factor = (yb - ya) * (xb - xa)
        out[n, c, oy, ox] = total / dtype(max(factor, 1)) if yb > ya and xb > xa else dtype(0)
    return avg_pool2d


def _adaptive_source(dtype):
    def adaptive_pool2d(x, out, indices, take_max):
        """Cell (i, j) pools rows [floor(i H / OH), ceil((i + 1) H / OH)) and likewise
        columns; the max takes the first largest value, or the first NaN."""
        k = cuda.grid(1)
        if k >= out.size:
            return
        height, width = x.shape[2], x.shape[3]
        out_h, out_w = out.shape[2], out.shape[3]
        rest, j = divmod(k, out_w)
        rest, i = divmod(rest, out_h)
        n, c = divmod(rest, out.shape[1])
        h0, h1 = (i * height) // out_h, -(-((i + 1) * height) // out_h)
        w0, w1 = (j * width) // out_w, -(-((j + 1) * width) // out_w)
        if take_max:
            best = x[n, c, h0, w0]
            where = h0 * width + w0
            for h in range(h0, h1):
                for w in range(w0, w1):
                    value = x[n, c, h, w]
                    if not math.isnan(best) and (value > best or math.isnan(value)):
                        best = value
                        where = h * width + w
            out[n, c, i, j] = best
            indices[n, c, i, j] = where
        else:
            total = dtype(0)
            for h in range(h0, h1):
                for w in range(w0, w1):
                    total += x[n, c, h, w]
            out[n, c, i, j] = total / dtype((h1 - h0) * (w1 - w0))
    return adaptive_pool2d


def _unpool_source(dtype):
    def max_unpool2d(x, indices, out, invalid):
        """out.flat-per-plane[indices] = x (out zeroed before); counts bad indices."""
        i = cuda.grid(1)
        if i >= x.size:
            return
        rest, q = divmod(i, x.shape[3])
        rest, p = divmod(rest, x.shape[2])
        n, c = divmod(rest, x.shape[1])
        index = indices[n, c, p, q]
        if 0 <= index < out.shape[2] * out.shape[3]:
            row, col = divmod(index, out.shape[3])
            out[n, c, row, col] = x[n, c, p, q]
        else:
            cuda.atomic.add(invalid, 0, 1)
    return max_unpool2d


def _fill_source(dtype):
    def fill(flat, value):
        i = cuda.grid(1)
        if i < flat.size:
            flat[i] = value
    return fill


def ptx_signatures(dtype: str) -> list:
    """(kernel factory, signature) pairs for the PTX compile check."""
    array, index = f"{dtype}[:, :, :, ::1]", "int64[:, :, :, ::1]"
    ints = lambda count: ", ".join(["int64"] * count)  # noqa: E731
    return [
        (_max_pool_source, f"void({array}, {array}, {index}, {ints(8)}, boolean)"),
        (_avg_pool_source, f"void({array}, {array}, {ints(6)}, boolean, int64)"),
        (_adaptive_source, f"void({array}, {array}, {index}, boolean)"),
        (_unpool_source, f"void({array}, {index}, {array}, int64[::1])"),
        (_fill_source, f"void({dtype}[::1], {dtype})"),
    ]
