"""Transposed convolutions on the GPU, by stride phases, one thread per output value.

Output row y receives input row iy through tap r when y = iy * stride - padding +
r * dilation. For a given y only the taps whose (y + padding - r * dilation) is a
multiple of the stride contribute (the output's stride phase picks them, as the CPU's
phase decomposition does): the thread walks those taps, reads the input values they
reach and sums over the group's input channels; nothing is scattered, so no atomics and
a deterministic sum. Weight (C_in, C_out / groups, kH, kW), as torch stores it.
"""

from __future__ import annotations

from numba import cuda

from .runtime import grid_1d, kernel


def _transposed_source(dtype):
    def conv_transpose2d(x, w, bias, out, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                         groups, has_bias):
        i = cuda.grid(1)
        if i >= out.size:
            return
        height, width = x.shape[2], x.shape[3]
        cg_in = x.shape[1] // groups
        kg_out, kh, kw = w.shape[1], w.shape[2], w.shape[3]
        rest, ox = divmod(i, out.shape[3])
        rest, oy = divmod(rest, out.shape[2])
        n, k = divmod(rest, out.shape[1])
        g, k_in_group = divmod(k, kg_out)
        total = bias[k] if has_bias else dtype(0)
        for r in range(kh):
            ty = oy + pad_h - r * dil_h
            if ty < 0 or ty % stride_h != 0:
                continue
            iy = ty // stride_h
            if iy >= height:
                continue
            for s in range(kw):
                tx = ox + pad_w - s * dil_w
                if tx < 0 or tx % stride_w != 0:
                    continue
                ix = tx // stride_w
                if ix >= width:
                    continue
                for c in range(g * cg_in, (g + 1) * cg_in):
                    total += x[n, c, iy, ix] * w[c, k_in_group, r, s]
        out[n, k, oy, ox] = total
    return conv_transpose2d


def run(tspec, x, w, bias, out, stream):
    """out = conv_transpose(x, w) + bias for 4-D contiguous device arrays, on ``stream``."""
    blocks, threads = grid_1d(out.size)
    kernel(_transposed_source, tspec.dtype)[blocks, threads, stream](
        x, w, w.reshape(w.size) if bias is None else bias, out, *tspec.stride,
        *tspec.padding, *tspec.dilation, tspec.groups, bias is not None)
    return out


def ptx_signatures(dtype: str) -> list:
    """(kernel factory, signature) pairs for the PTX compile check."""
    a4 = f"{dtype}[:, :, :, ::1]"
    return [(_transposed_source, f"void({a4}, {a4}, {dtype}[::1], {a4}, "
                                 + ", ".join(["int64"] * 7) + ", boolean)")]
