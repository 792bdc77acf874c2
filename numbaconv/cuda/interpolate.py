"""``interpolate`` on the GPU: one thread per output value, from per-axis source tables.

The host computes, per spatial axis, each output index's source indices and weight
exactly as the CPU path does (:func:`numbaconv.interpolation.resize_sources`, in the
input's dtype, so 'nearest' picks the same pixels as torch); the kernel gathers. A
bilinear output combines its four neighbours in the CPU's order (rows first, then
columns), so both paths round alike. 1-D inputs run as planes of height 1.
"""

from __future__ import annotations

from numba import cuda


def _resize_source(linear: bool):
    def factory(dtype):
        one = dtype(1)

        def resize(x, out, low_y, high_y, weight_y, low_x, high_x, weight_x):
            i = cuda.grid(1)
            if i >= out.size:
                return
            rest, ox = divmod(i, out.shape[3])
            rest, oy = divmod(rest, out.shape[2])
            n, c = divmod(rest, out.shape[1])
            y0, x0 = low_y[oy], low_x[ox]
            if not linear:
                out[n, c, oy, ox] = x[n, c, y0, x0]
                return
            y1, x1, wy, wx = high_y[oy], high_x[ox], weight_y[oy], weight_x[ox]
            left = x[n, c, y0, x0] * (one - wy) + x[n, c, y1, x0] * wy
            right = x[n, c, y0, x1] * (one - wy) + x[n, c, y1, x1] * wy
            out[n, c, oy, ox] = left * (one - wx) + right * wx
        return resize

    factory.__name__ = "resize_linear" if linear else "resize_nearest"
    return factory


RESIZE = {False: _resize_source(False), True: _resize_source(True)}


def ptx_signatures(dtype: str) -> list:
    """(kernel factory, signature) pairs for the PTX compile check."""
    a4, index, weight = f"{dtype}[:, :, :, ::1]", "int64[::1]", f"{dtype}[::1]"
    axis = f"{index}, {index}, {weight}"
    return [(source, f"void({a4}, {a4}, {axis}, {axis})") for source in RESIZE.values()]
