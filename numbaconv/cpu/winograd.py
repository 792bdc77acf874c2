"""Winograd minimal filtering F(2x2, 3x3) and F(4x4, 3x3) on the CPU.

Pipeline per group (see ``shared/winograd.md`` for the maths)::

    x (N, C, H, W) --to_padded_nhwc--> xh (N, rows, cols, C)      channels last, zero padded
    xh --input_transform--> V (P, T, C)       P = alpha^2 positions, T = N * tiles
    V[p] (T x C) @ U[p] (C x K) --BLAS--> M (P, T, K)
    M --output_transform (+ bias)--> out (N, K, OH, OW)

The transforms run channels-last so that their innermost loop is a contiguous run
over channels (LLVM vectorises it), whatever the image size; the per-position
products are plain row-major BLAS calls made from serial code. The input is padded
up to whole tiles, and the output transform writes only the rows and columns that
exist, so ragged edges need no special case.

The transformed weights ``U`` depend only on the weights: they are cached (see
:mod:`numbaconv.cpu.weight_cache`) and recomputed whenever the weight values change.
"""

import numpy as np
from numba import njit, prange

from ..config import JIT_PARALLEL
from .blas import single_threaded_blas
from .weight_cache import TRANSFORMED_WEIGHTS

# G matrices (alpha x 3) of Lavin's wincnn construction (points 0, +-1, +-2).
G_F2 = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
G_F4 = np.array([
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
])


# --------------------------------------------------------------------------- 1-D transforms
# B^T d and A^T m written out: fewer operations than a matrix loop, and straight-line
# code the vectoriser handles well inside the channel loops below.


@njit(inline="always")
def _bt2(d0, d1, d2, d3):
    return d0 - d2, d1 + d2, d2 - d1, d3 - d1


@njit(inline="always")
def _at2(m0, m1, m2, m3):
    return m0 + m1 + m2, m1 - m2 + m3


@njit(inline="always")
def _bt4(d0, d1, d2, d3, d4, d5):
    return (
        4 * d0 - 5 * d2 + d4,
        d3 + d4 - 4 * (d1 + d2),
        4 * (d1 - d2) + d4 - d3,
        2 * (d3 - d1) + d4 - d2,
        2 * (d1 - d3) + d4 - d2,
        4 * d1 - 5 * d3 + d5,
    )


@njit(inline="always")
def _at4(m0, m1, m2, m3, m4, m5):
    s12, d12 = m1 + m2, m1 - m2
    s34, d34 = m3 + m4, m3 - m4
    return m0 + s12 + s34, d12 + 2 * d34, s12 + 4 * s34, d12 + 8 * d34 + m5


# --------------------------------------------------------------------------- layout


@njit(**JIT_PARALLEL)
def to_padded_nhwc(x, c0, channels, pad_top, pad_left, rows, cols):
    """Channels [c0, c0 + channels) of x (N, C, H, W), zero padded, as (N, rows, cols, channels)."""
    n_batch, _, height, width = x.shape
    xh = np.empty((n_batch, rows, cols, channels), dtype=x.dtype)
    for job in prange(n_batch * rows):
        n = job // rows
        h = job % rows
        ih = h - pad_top
        dst = xh[n, h]
        if ih < 0 or ih >= height:
            dst[:, :] = 0
            continue
        dst[:pad_left, :] = 0
        dst[pad_left + width:, :] = 0
        for c in range(channels):
            src = x[n, c0 + c, ih]
            for w in range(width):
                dst[pad_left + w, c] = src[w]
    return xh


# --------------------------------------------------------------------------- weights


@njit(**JIT_PARALLEL)
def weight_transform(weight, k0, out_channels, g_matrix):
    """U[p, c, k] = (G g G^T)[p] for g = weight[k0 + k, c] (a 3x3 kernel); float64 maths."""
    alpha = g_matrix.shape[0]
    cin = weight.shape[1]
    u = np.empty((alpha * alpha, cin, out_channels), dtype=weight.dtype)
    for c in prange(cin):
        tmp = np.empty((alpha, 3))
        for k in range(out_channels):
            g = weight[k0 + k, c]
            for a in range(alpha):
                for s in range(3):
                    tmp[a, s] = (g_matrix[a, 0] * g[0, s] + g_matrix[a, 1] * g[1, s]
                                 + g_matrix[a, 2] * g[2, s])
            for a in range(alpha):
                for b in range(alpha):
                    u[a * alpha + b, c, k] = (tmp[a, 0] * g_matrix[b, 0] + tmp[a, 1] * g_matrix[b, 1]
                                              + tmp[a, 2] * g_matrix[b, 2])
    return u


# --------------------------------------------------------------------------- F(2x2, 3x3)


@njit(**JIT_PARALLEL)
def input_transform_f2(xh, tiles_h, tiles_w):
    n_batch, _, _, channels = xh.shape
    per_image = tiles_h * tiles_w
    v = np.empty((16, n_batch * per_image, channels), dtype=xh.dtype)
    for job in prange(n_batch * tiles_h):
        n = job // tiles_h
        ty = job % tiles_h
        tmp = np.empty((4, 4, channels), dtype=xh.dtype)
        for tx in range(tiles_w):
            t = n * per_image + ty * tiles_w + tx
            for j in range(4):
                r0 = xh[n, 2 * ty, 2 * tx + j]
                r1 = xh[n, 2 * ty + 1, 2 * tx + j]
                r2 = xh[n, 2 * ty + 2, 2 * tx + j]
                r3 = xh[n, 2 * ty + 3, 2 * tx + j]
                for c in range(channels):
                    a0, a1, a2, a3 = _bt2(r0[c], r1[c], r2[c], r3[c])
                    tmp[0, j, c] = a0
                    tmp[1, j, c] = a1
                    tmp[2, j, c] = a2
                    tmp[3, j, c] = a3
            for a in range(4):
                q0, q1, q2, q3 = tmp[a, 0], tmp[a, 1], tmp[a, 2], tmp[a, 3]
                v0, v1, v2, v3 = v[4 * a, t], v[4 * a + 1, t], v[4 * a + 2, t], v[4 * a + 3, t]
                for c in range(channels):
                    b0, b1, b2, b3 = _bt2(q0[c], q1[c], q2[c], q3[c])
                    v0[c] = b0
                    v1[c] = b1
                    v2[c] = b2
                    v3[c] = b3
    return v


@njit(**JIT_PARALLEL)
def output_transform_f2(m, tiles_h, tiles_w, bias, k0, out):
    """out[n, k0 + k, 2ty + i, 2tx + j] = (A^T M A)[i, j] + bias[k0 + k], inside the output."""
    out_h, out_w = out.shape[2], out.shape[3]
    channels = m.shape[2]
    n_batch = out.shape[0]
    per_image = tiles_h * tiles_w
    for job in prange(n_batch * tiles_h):
        n = job // tiles_h
        ty = job % tiles_h
        tmp = np.empty((2, 4, channels), dtype=m.dtype)
        y = np.empty((2, channels), dtype=m.dtype)
        for tx in range(tiles_w):
            t = n * per_image + ty * tiles_w + tx
            for b in range(4):
                m0, m1, m2, m3 = m[b, t], m[4 + b, t], m[8 + b, t], m[12 + b, t]
                for k in range(channels):
                    y0, y1 = _at2(m0[k], m1[k], m2[k], m3[k])
                    tmp[0, b, k] = y0
                    tmp[1, b, k] = y1
            for i in range(min(2, out_h - 2 * ty)):
                q0, q1, q2, q3 = tmp[i, 0], tmp[i, 1], tmp[i, 2], tmp[i, 3]
                for k in range(channels):
                    z0, z1 = _at2(q0[k], q1[k], q2[k], q3[k])
                    y[0, k] = z0 + bias[k0 + k]
                    y[1, k] = z1 + bias[k0 + k]
                for j in range(min(2, out_w - 2 * tx)):
                    for k in range(channels):
                        out[n, k0 + k, 2 * ty + i, 2 * tx + j] = y[j, k]
    return out


# --------------------------------------------------------------------------- F(4x4, 3x3)


@njit(**JIT_PARALLEL)
def input_transform_f4(xh, tiles_h, tiles_w):
    n_batch, _, _, channels = xh.shape
    per_image = tiles_h * tiles_w
    v = np.empty((36, n_batch * per_image, channels), dtype=xh.dtype)
    for job in prange(n_batch * tiles_h):
        n = job // tiles_h
        ty = job % tiles_h
        tmp = np.empty((6, 6, channels), dtype=xh.dtype)
        for tx in range(tiles_w):
            t = n * per_image + ty * tiles_w + tx
            for j in range(6):
                r0 = xh[n, 4 * ty, 4 * tx + j]
                r1 = xh[n, 4 * ty + 1, 4 * tx + j]
                r2 = xh[n, 4 * ty + 2, 4 * tx + j]
                r3 = xh[n, 4 * ty + 3, 4 * tx + j]
                r4 = xh[n, 4 * ty + 4, 4 * tx + j]
                r5 = xh[n, 4 * ty + 5, 4 * tx + j]
                for c in range(channels):
                    a0, a1, a2, a3, a4, a5 = _bt4(r0[c], r1[c], r2[c], r3[c], r4[c], r5[c])
                    tmp[0, j, c] = a0
                    tmp[1, j, c] = a1
                    tmp[2, j, c] = a2
                    tmp[3, j, c] = a3
                    tmp[4, j, c] = a4
                    tmp[5, j, c] = a5
            for a in range(6):
                q0, q1, q2 = tmp[a, 0], tmp[a, 1], tmp[a, 2]
                q3, q4, q5 = tmp[a, 3], tmp[a, 4], tmp[a, 5]
                v0, v1, v2 = v[6 * a, t], v[6 * a + 1, t], v[6 * a + 2, t]
                v3, v4, v5 = v[6 * a + 3, t], v[6 * a + 4, t], v[6 * a + 5, t]
                for c in range(channels):
                    b0, b1, b2, b3, b4, b5 = _bt4(q0[c], q1[c], q2[c], q3[c], q4[c], q5[c])
                    v0[c] = b0
                    v1[c] = b1
                    v2[c] = b2
                    v3[c] = b3
                    v4[c] = b4
                    v5[c] = b5
    return v


@njit(**JIT_PARALLEL)
def output_transform_f4(m, tiles_h, tiles_w, bias, k0, out):
    """out[n, k0 + k, 4ty + i, 4tx + j] = (A^T M A)[i, j] + bias[k0 + k], inside the output."""
    out_h, out_w = out.shape[2], out.shape[3]
    channels = m.shape[2]
    n_batch = out.shape[0]
    per_image = tiles_h * tiles_w
    for job in prange(n_batch * tiles_h):
        n = job // tiles_h
        ty = job % tiles_h
        tmp = np.empty((4, 6, channels), dtype=m.dtype)
        y = np.empty((4, channels), dtype=m.dtype)
        for tx in range(tiles_w):
            t = n * per_image + ty * tiles_w + tx
            for b in range(6):
                m0, m1, m2 = m[b, t], m[6 + b, t], m[12 + b, t]
                m3, m4, m5 = m[18 + b, t], m[24 + b, t], m[30 + b, t]
                for k in range(channels):
                    y0, y1, y2, y3 = _at4(m0[k], m1[k], m2[k], m3[k], m4[k], m5[k])
                    tmp[0, b, k] = y0
                    tmp[1, b, k] = y1
                    tmp[2, b, k] = y2
                    tmp[3, b, k] = y3
            for i in range(min(4, out_h - 4 * ty)):
                q0, q1, q2 = tmp[i, 0], tmp[i, 1], tmp[i, 2]
                q3, q4, q5 = tmp[i, 3], tmp[i, 4], tmp[i, 5]
                for k in range(channels):
                    z0, z1, z2, z3 = _at4(q0[k], q1[k], q2[k], q3[k], q4[k], q5[k])
                    bk = bias[k0 + k]
                    y[0, k] = z0 + bk
                    y[1, k] = z1 + bk
                    y[2, k] = z2 + bk
                    y[3, k] = z3 + bk
                for j in range(min(4, out_w - 4 * tx)):
                    for k in range(channels):
                        out[n, k0 + k, 4 * ty + i, 4 * tx + j] = y[j, k]
    return out


# --------------------------------------------------------------------------- driver


@njit(**JIT_PARALLEL)
def batched_gemm(v, u):
    """M[p] = V[p] @ U[p] for every transform-domain position p.

    One single-threaded BLAS call per position, spread over Numba's threads (see
    :mod:`numbaconv.cpu.blas` for why BLAS must not start threads of its own here).
    """
    m = np.empty((v.shape[0], v.shape[1], u.shape[2]), dtype=v.dtype)
    for p in prange(v.shape[0]):
        np.dot(v[p], u[p], m[p])
    return m


_VARIANTS = {
    2: (G_F2, input_transform_f2, output_transform_f2),
    4: (G_F4, input_transform_f4, output_transform_f4),
}


def transformed_weights(weight, groups, tile):
    """U per group, (groups, P, C/groups, K/groups), from the cache when the weights are unchanged."""
    g_matrix = _VARIANTS[tile][0]

    def compute():
        kg = weight.shape[0] // groups
        return [weight_transform(weight, g * kg, kg, g_matrix)
                for g in range(groups)]

    return TRANSFORMED_WEIGHTS.get(("winograd", tile), weight, compute)


def run_tile(spec, x, weight, bias, tile):
    _, input_transform, output_transform = _VARIANTS[tile]
    tiles_h = -(-spec.out_height // tile)
    tiles_w = -(-spec.out_width // tile)
    rows, cols = tiles_h * tile + 2, tiles_w * tile + 2
    cg, kg = spec.in_channels_per_group, spec.out_channels_per_group
    out = np.empty((spec.batch, spec.out_channels, spec.out_height, spec.out_width), x.dtype)
    u_groups = transformed_weights(weight, spec.groups, tile)
    for g in range(spec.groups):
        xh = to_padded_nhwc(x, g * cg, cg, spec.pad_top, spec.pad_left, rows, cols)
        v = input_transform(xh, tiles_h, tiles_w)
        del xh
        with single_threaded_blas():
            m = batched_gemm(v, u_groups[g])
        del v
        output_transform(m, tiles_h, tiles_w, bias, g * kg, out)
    return out


def run_f2(spec, x, weight, bias):
    return run_tile(spec, x, weight, bias, 2)


def run_f4(spec, x, weight, bias):
    return run_tile(spec, x, weight, bias, 4)
