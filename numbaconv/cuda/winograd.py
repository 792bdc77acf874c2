"""Winograd F(2x2,3x3) and F(4x4,3x3) on the GPU: three transform kernels and a tiled GEMM.

Pipeline (``alpha = tile + 2``, P = alpha^2 positions, T = N * tiles_h * tiles_w)::

    weight (K, C/g, 3, 3) --weight_transform--> U (P, K, C/g)       U = G w G^T
    x (N, C, H, W)        --input_transform---> V (P, C, T)         V = B^T d B
    per position p and group: M[p] (K/g x T) = U[p] (K/g x C/g) @ V[p] (C/g x T)
    M (P, K, T)           --output_transform--> out (N, K, OH, OW)  y = A^T m A + bias

One thread per tile in the transforms (reading and writing consecutive tiles, so the
accesses coalesce); the products are one batched, shared-memory tiled GEMM launch
(:mod:`numbaconv.cuda.gemm`). The input transform reads zeros outside the input, and the
output transform writes only the rows and columns that exist, so ragged edges and
padding need no special case. The output transform counts non-finite results, so that
``auto`` can rerun a layer whose inf/NaN spread wider than torch's (see the CPU
Winograd) with the direct kernel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import winograd_math
from ..spec import ConvSpec
from . import direct, gemm
from .runtime import grid_1d, kernel

def _weight_transform_source(tile):
    alpha = tile + 2

    def factory(dtype):
        g_matrix = winograd_math.G_MATRICES[tile].astype(np.dtype(str(dtype)))

        def weight_transform(w, u):
            """u[p, k, c] = (G w[k, c] G^T)[p]: one thread per (k, c)."""
            tmp = cuda.local.array((alpha, 3), dtype)
            i = cuda.grid(1)
            k, c = divmod(i, w.shape[1])
            if k >= w.shape[0]:
                return
            for a in range(alpha):
                for s in range(3):
                    tmp[a, s] = (g_matrix[a, 0] * w[k, c, 0, s] + g_matrix[a, 1] * w[k, c, 1, s]
                                 + g_matrix[a, 2] * w[k, c, 2, s])
            for a in range(alpha):
                for b in range(alpha):
                    u[a * alpha + b, k, c] = (tmp[a, 0] * g_matrix[b, 0] + tmp[a, 1] * g_matrix[b, 1]
                                              + tmp[a, 2] * g_matrix[b, 2])
        return weight_transform

    factory.__name__ = f"weight_transform_f{tile}"
    return factory


def _input_transform_source(tile):
    alpha = tile + 2

    def factory(dtype):
        bt = winograd_math.BT_MATRICES[tile].astype(np.dtype(str(dtype)))

        def input_transform(x, v, pad_top, pad_left, tiles_h, tiles_w):
            """v[p, c, t] = (B^T d B)[p] for the input tile d of tile t: one thread each."""
            d = cuda.local.array((alpha, alpha), dtype)
            tmp = cuda.local.array((alpha, alpha), dtype)
            tiles = tiles_h * tiles_w
            i = cuda.grid(1)
            rest, t_in_image = divmod(i, tiles)
            n, c = divmod(rest, x.shape[1])
            if n >= x.shape[0]:
                return
            ty, tx = divmod(t_in_image, tiles_w)
            y0, x0 = ty * tile - pad_top, tx * tile - pad_left
            for a in range(alpha):
                for b in range(alpha):
                    y, z = y0 + a, x0 + b
                    value = dtype(0)
                    if 0 <= y < x.shape[2] and 0 <= z < x.shape[3]:
                        value = x[n, c, y, z]
                    d[a, b] = value
            for a in range(alpha):  # tmp = B^T d
                for b in range(alpha):
                    total = dtype(0)
                    for e in range(alpha):
                        total += bt[a, e] * d[e, b]
                    tmp[a, b] = total
            t = n * tiles + t_in_image
            for a in range(alpha):  # v = tmp B
                for b in range(alpha):
                    total = dtype(0)
                    for e in range(alpha):
                        total += tmp[a, e] * bt[b, e]
                    v[a * alpha + b, c, t] = total
        return input_transform

    factory.__name__ = f"input_transform_f{tile}"
    return factory


def _output_transform_source(tile):
    alpha = tile + 2

    def factory(dtype):
        at = winograd_math.AT_MATRICES[tile].astype(np.dtype(str(dtype)))

        def output_transform(m, bias, out, tiles_h, tiles_w, nonfinite):
            """out tile = A^T m A + bias for tile t of channel k: one thread each."""
            tmp = cuda.local.array((tile, alpha), dtype)
            tiles = tiles_h * tiles_w
            i = cuda.grid(1)
            rest, t_in_image = divmod(i, tiles)
            n, k = divmod(rest, out.shape[1])
            if n >= out.shape[0]:
                return
            t = n * tiles + t_in_image
            for a in range(tile):  # tmp = A^T m
                for b in range(alpha):
                    total = dtype(0)
                    for e in range(alpha):
                        total += at[a, e] * m[e * alpha + b, k, t]
                    tmp[a, b] = total
            ty, tx = divmod(t_in_image, tiles_w)
            bad = 0
            for a in range(tile):  # out = tmp A + bias, only where the output exists
                y = ty * tile + a
                for b in range(tile):
                    z = tx * tile + b
                    if y < out.shape[2] and z < out.shape[3]:
                        total = bias[k]
                        for e in range(alpha):
                            total += tmp[a, e] * at[b, e]
                        out[n, k, y, z] = total
                        if math.isinf(total) or math.isnan(total):
                            bad += 1
            if bad:
                cuda.atomic.add(nonfinite, 0, bad)
        return output_transform

    factory.__name__ = f"output_transform_f{tile}"
    return factory


WEIGHT_TRANSFORM = {t: _weight_transform_source(t) for t in (2, 4)}
INPUT_TRANSFORM = {t: _input_transform_source(t) for t in (2, 4)}
OUTPUT_TRANSFORM = {t: _output_transform_source(t) for t in (2, 4)}


def launch(spec: ConvSpec, x, weight, bias, out, stream, tile: int):
    """Compute ``out`` (zero padding, stride 1, dilation 1, 3x3) on ``stream``; returns a
    one-element device array that will hold the number of inf/NaN outputs."""
    alpha = tile + 2
    positions = alpha * alpha
    tiles_h, tiles_w = -(-spec.out_height // tile), -(-spec.out_width // tile)
    tiles = spec.batch * tiles_h * tiles_w
    groups, cg, kg = spec.groups, spec.in_channels_per_group, spec.out_channels_per_group
    dtype = spec.dtype
    u = cuda.device_array((positions, spec.out_channels, cg), dtype=dtype, stream=stream)
    v = cuda.device_array((positions, spec.in_channels, tiles), dtype=dtype, stream=stream)
    m = cuda.device_array((positions, spec.out_channels, tiles), dtype=dtype, stream=stream)
    nonfinite = cuda.to_device(np.zeros(1, np.int64), stream=stream)

    blocks, threads = grid_1d(spec.out_channels * cg)
    kernel(WEIGHT_TRANSFORM[tile], dtype)[blocks, threads, stream](weight, u)
    blocks, threads = grid_1d(spec.batch * spec.in_channels * tiles_h * tiles_w)
    kernel(INPUT_TRANSFORM[tile], dtype)[blocks, threads, stream](
        x, v, spec.pad_top, spec.pad_left, tiles_h, tiles_w)
    # (P, K, C/g) -> (P * g, K/g, C/g) and so on: the groups become more GEMM batches
    gemm.launch_matmul(u.reshape(positions * groups, kg, cg), v.reshape(positions * groups, cg, tiles),
                  m.reshape(positions * groups, kg, tiles), dtype, stream)
    blocks, threads = grid_1d(spec.batch * spec.out_channels * tiles_h * tiles_w)
    kernel(OUTPUT_TRANSFORM[tile], dtype)[blocks, threads, stream](
        m, bias, out, tiles_h, tiles_w, nonfinite)
    return nonfinite


def _runner(tile: int):
    def run(spec: ConvSpec, x, weight, bias, out, stream, match_torch_nonfinite=False):
        nonfinite = launch(spec, x, weight, bias, out, stream, tile)
        # Reading the count waits for the stream, so only when it matters.
        if match_torch_nonfinite and nonfinite.copy_to_host(stream=stream)[0]:
            direct.run(spec, x, weight, bias, out, stream)  # torch's inf/NaN pattern
        return out

    run.__name__ = f"run_f{tile}"
    return run


run_f2, run_f4 = _runner(2), _runner(4)


def ptx_signatures(dtype: str) -> list:
    a4, a3 = f"{dtype}[:, :, :, ::1]", f"{dtype}[:, :, ::1]"
    signatures = []
    for tile in (2, 4):
        signatures += [
            (WEIGHT_TRANSFORM[tile], f"void({a4}, {a3})"),
            (INPUT_TRANSFORM[tile], f"void({a4}, {a3}, int64, int64, int64, int64)"),
            (OUTPUT_TRANSFORM[tile], f"void({a3}, {dtype}[::1], {a4}, int64, int64, int64[::1])"),
        ]
    return signatures
