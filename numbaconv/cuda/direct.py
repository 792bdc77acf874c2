"""Direct convolution on the GPU, tiled through shared memory; runs every spec.

A block of TILE_H x TILE_W threads computes a TILE_H x TILE_W patch of output pixels for
K_PER_THREAD output channels of one image and group, each thread keeping its
K_PER_THREAD sums in registers. Per input channel the block first stages the input
patch its outputs read ((TILE - 1) * stride + (k - 1) * dilation + 1 on a side, zero
padding included) in shared memory, so each input value is read from global memory once
per block instead of kH * kW times; the weights, the same for every thread of a block,
come through the cache as broadcast reads. When the patch is larger than the shared
buffer (large strides or dilations) the block reads the input straight from global
memory instead, with the same arithmetic.
"""

from __future__ import annotations

from numba import cuda

from ..spec import ConvSpec
from .runtime import kernel

TILE_H, TILE_W = 8, 32  # threads per block: one per output pixel of the tile
THREADS = TILE_H * TILE_W
K_PER_THREAD = 8  # output channels per thread (register accumulators)
PATCH_ELEMENTS = 4096  # shared staging buffer (16 KiB in float32, 32 KiB in float64)


def _direct_source(dtype):
    def direct_conv2d(x, w, bias, out, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left,
                      tiles_w, tiles, k_blocks, staged):
        patch = cuda.shared.array(PATCH_ELEMENTS, dtype)
        acc = cuda.local.array(K_PER_THREAD, dtype)
        height, width = x.shape[2], x.shape[3]
        out_channels, cg, kh, kw = w.shape
        groups = x.shape[1] // cg
        kg = out_channels // groups
        # blockIdx.x = ((n * groups + g) * k_blocks + kb) * tiles + tile: one grid axis,
        # so batch * channels is not limited by gridDim.y's 65535
        rest, tile = divmod(cuda.blockIdx.x, tiles)
        rest, kb = divmod(rest, k_blocks)
        n, g = divmod(rest, groups)
        k0 = g * kg + kb * K_PER_THREAD
        k_count = min(K_PER_THREAD, kg - kb * K_PER_THREAD)
        k_last = k0 + k_count - 1
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        oy0 = (tile // tiles_w) * TILE_H
        ox0 = (tile % tiles_w) * TILE_W
        oy, ox = oy0 + ty, ox0 + tx
        iy0, ix0 = oy0 * stride_h - pad_top, ox0 * stride_w - pad_left
        patch_h = (TILE_H - 1) * stride_h + (kh - 1) * dil_h + 1
        patch_w = (TILE_W - 1) * stride_w + (kw - 1) * dil_w + 1
        for j in range(K_PER_THREAD):
            acc[j] = 0
        zero = dtype(0)
        for c in range(cg):
            channel = g * cg + c
            if staged:
                cuda.syncthreads()  # the previous channel's patch is no longer read
                for e in range(ty * TILE_W + tx, patch_h * patch_w, THREADS):
                    r, q = divmod(e, patch_w)
                    iy, ix = iy0 + r, ix0 + q
                    value = zero
                    if 0 <= iy < height and 0 <= ix < width:
                        value = x[n, channel, iy, ix]
                    patch[e] = value
                cuda.syncthreads()
            for r in range(kh):
                for s in range(kw):
                    if staged:
                        value = patch[(ty * stride_h + r * dil_h) * patch_w
                                      + tx * stride_w + s * dil_w]
                    else:
                        iy = oy * stride_h - pad_top + r * dil_h
                        ix = ox * stride_w - pad_left + s * dil_w
                        value = zero
                        if 0 <= iy < height and 0 <= ix < width:
                            value = x[n, channel, iy, ix]
                    # A constant trip count keeps acc in registers; past the group's
                    # last channel the sums repeat that channel and are not stored.
                    for j in range(K_PER_THREAD):
                        acc[j] += value * w[min(k0 + j, k_last), c, r, s]
        if oy < out.shape[2] and ox < out.shape[3]:
            for j in range(K_PER_THREAD):
                if j < k_count:
                    out[n, k0 + j, oy, ox] = acc[j] + bias[k0 + j]
    return direct_conv2d


def patch_fits(spec: ConvSpec) -> bool:
    patch_h = (TILE_H - 1) * spec.stride_h + (spec.kernel_height - 1) * spec.dilation_h + 1
    patch_w = (TILE_W - 1) * spec.stride_w + (spec.kernel_width - 1) * spec.dilation_w + 1
    return patch_h * patch_w <= PATCH_ELEMENTS


def run(spec: ConvSpec, x, weight, bias, out, stream, match_torch_nonfinite=False):
    """out = conv(x, weight) + bias for 4-D contiguous device arrays (padding zeros), on
    ``stream``; its inf/NaN propagation is torch's already."""
    tiles_w = -(-spec.out_width // TILE_W)
    tiles = -(-spec.out_height // TILE_H) * tiles_w
    k_blocks = -(-spec.out_channels_per_group // K_PER_THREAD)
    blocks = spec.batch * spec.groups * k_blocks * tiles
    kernel(_direct_source, spec.dtype)[blocks, (TILE_W, TILE_H), stream](
        x, weight, bias, out, spec.stride_h, spec.stride_w, spec.dilation_h, spec.dilation_w,
        spec.pad_top, spec.pad_left, tiles_w, tiles, k_blocks, patch_fits(spec))
    return out


def ptx_signatures(dtype: str) -> list:
    array = f"{dtype}[:, :, :, ::1]"
    return [(_direct_source, f"void({array}, {array}, {dtype}[::1], {array}, "
                             + ", ".join(["int64"] * 9) + ", boolean)")]
