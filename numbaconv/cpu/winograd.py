"""Winograd minimal filtering F(2x2, 3x3) and F(4x4, 3x3) on the CPU.

Pipeline per group (see ``shared/winograd.md`` for the maths)::

    x (N, C, H, W) --input transform, a tile row at a time--> V (P, T, C)
                                        P = alpha^2 positions, T = N * tiles
    V[p] (T x C) @ U[p] (C x K) --BLAS--> M (P, T, K)
    M --output_transform (+ bias)--> out (N, K, OH, OW)

The transforms run channels-last (each tile row's input rows are transposed into a
small cached buffer first) so that their innermost loop is a contiguous run over
channels (LLVM vectorises it), whatever the image size; the per-position products
are row-major BLAS calls, single-threaded inside Numba's threads. The input is
zero padded up to whole tiles, and the output transform writes only the rows and
columns that exist, so ragged edges need no special case.

The transformed weights ``U`` depend only on the weights: they are cached (see
:mod:`numbaconv.cpu.weight_cache`) and recomputed whenever the weight values change.
"""

from dataclasses import replace

import numba
import numpy as np
from numba import njit, prange

from ..registry import winograd_block_rows
from ..config import JIT_PARALLEL
from .blas import single_threaded_blas
from .layout import pad_phase_split
from .weight_cache import TRANSFORMED_WEIGHTS
from .workspace import scratch

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


# --------------------------------------------------------------------------- per-tile transforms
# Each works on all channels of one tile at once: the innermost loops run over the
# contiguous channel axis. ``tmp`` holds the half-transformed tile.


@njit(inline="always")
def _input_tile_f2(rows, w0, tmp, vb, i):
    """vb[:, i] = B^T d B for the 4x4 patch d = rows[0:4, w0:w0+4] (channels last)."""
    channels = rows.shape[2]
    for j in range(4):
        r0, r1, r2, r3 = rows[0, w0 + j], rows[1, w0 + j], rows[2, w0 + j], rows[3, w0 + j]
        for c in range(channels):
            a0, a1, a2, a3 = _bt2(r0[c], r1[c], r2[c], r3[c])
            tmp[0, j, c] = a0
            tmp[1, j, c] = a1
            tmp[2, j, c] = a2
            tmp[3, j, c] = a3
    for a in range(4):
        q0, q1, q2, q3 = tmp[a, 0], tmp[a, 1], tmp[a, 2], tmp[a, 3]
        v0, v1, v2, v3 = vb[4 * a, i], vb[4 * a + 1, i], vb[4 * a + 2, i], vb[4 * a + 3, i]
        for c in range(channels):
            b0, b1, b2, b3 = _bt2(q0[c], q1[c], q2[c], q3[c])
            v0[c] = b0
            v1[c] = b1
            v2[c] = b2
            v3[c] = b3


@njit(inline="always")
def _output_tile_f2(mb, i, tmp, ybuf, ow0):
    """ybuf[0:2, ow0:ow0+2] = A^T m A for the transform-domain tile m = mb[:, i]."""
    channels = mb.shape[2]
    for b in range(4):
        m0, m1, m2, m3 = mb[b, i], mb[4 + b, i], mb[8 + b, i], mb[12 + b, i]
        for k in range(channels):
            y0, y1 = _at2(m0[k], m1[k], m2[k], m3[k])
            tmp[0, b, k] = y0
            tmp[1, b, k] = y1
    for r in range(2):
        q0, q1, q2, q3 = tmp[r, 0], tmp[r, 1], tmp[r, 2], tmp[r, 3]
        y0, y1 = ybuf[r, ow0], ybuf[r, ow0 + 1]
        for k in range(channels):
            z0, z1 = _at2(q0[k], q1[k], q2[k], q3[k])
            y0[k] = z0
            y1[k] = z1


@njit(inline="always")
def _input_tile_f4(rows, w0, tmp, vb, i):
    """vb[:, i] = B^T d B for the 6x6 patch d = rows[0:6, w0:w0+6] (channels last)."""
    channels = rows.shape[2]
    for j in range(6):
        r0, r1, r2 = rows[0, w0 + j], rows[1, w0 + j], rows[2, w0 + j]
        r3, r4, r5 = rows[3, w0 + j], rows[4, w0 + j], rows[5, w0 + j]
        for c in range(channels):
            a0, a1, a2, a3, a4, a5 = _bt4(r0[c], r1[c], r2[c], r3[c], r4[c], r5[c])
            tmp[0, j, c] = a0
            tmp[1, j, c] = a1
            tmp[2, j, c] = a2
            tmp[3, j, c] = a3
            tmp[4, j, c] = a4
            tmp[5, j, c] = a5
    for a in range(6):
        q0, q1, q2, q3, q4, q5 = tmp[a, 0], tmp[a, 1], tmp[a, 2], tmp[a, 3], tmp[a, 4], tmp[a, 5]
        v0, v1, v2 = vb[6 * a, i], vb[6 * a + 1, i], vb[6 * a + 2, i]
        v3, v4, v5 = vb[6 * a + 3, i], vb[6 * a + 4, i], vb[6 * a + 5, i]
        for c in range(channels):
            b0, b1, b2, b3, b4, b5 = _bt4(q0[c], q1[c], q2[c], q3[c], q4[c], q5[c])
            v0[c] = b0
            v1[c] = b1
            v2[c] = b2
            v3[c] = b3
            v4[c] = b4
            v5[c] = b5


@njit(inline="always")
def _output_tile_f4(mb, i, tmp, ybuf, ow0):
    """ybuf[0:4, ow0:ow0+4] = A^T m A for the transform-domain tile m = mb[:, i]."""
    channels = mb.shape[2]
    for b in range(6):
        m0, m1, m2 = mb[b, i], mb[6 + b, i], mb[12 + b, i]
        m3, m4, m5 = mb[18 + b, i], mb[24 + b, i], mb[30 + b, i]
        for k in range(channels):
            y0, y1, y2, y3 = _at4(m0[k], m1[k], m2[k], m3[k], m4[k], m5[k])
            tmp[0, b, k] = y0
            tmp[1, b, k] = y1
            tmp[2, b, k] = y2
            tmp[3, b, k] = y3
    for r in range(4):
        q0, q1, q2, q3, q4, q5 = tmp[r, 0], tmp[r, 1], tmp[r, 2], tmp[r, 3], tmp[r, 4], tmp[r, 5]
        y0, y1, y2, y3 = ybuf[r, ow0], ybuf[r, ow0 + 1], ybuf[r, ow0 + 2], ybuf[r, ow0 + 3]
        for k in range(channels):
            z0, z1, z2, z3 = _at4(q0[k], q1[k], q2[k], q3[k], q4[k], q5[k])
            y0[k] = z0
            y1[k] = z1
            y2[k] = z2
            y3[k] = z3


@njit(inline="always")
def _output_tile_row(mb, i0, tmp_out, ybuf, tile, tiles_w, bias, k0, out, n, oh0):
    """out[n, k0:, oh0:oh0+tile, :] = output transforms of one tile row (mb[:, i0 + tx]) + bias.

    The tile row is assembled channels-last in ``ybuf`` (tile, tiles_w * tile, K) and then
    written out a whole output row per channel: full cache lines, not 4-value pieces.
    """
    for tx in range(tiles_w):
        if tile == 4:
            _output_tile_f4(mb, i0 + tx, tmp_out, ybuf, 4 * tx)
        else:
            _output_tile_f2(mb, i0 + tx, tmp_out, ybuf, 2 * tx)
    out_h, out_w = out.shape[2], out.shape[3]
    for k in range(ybuf.shape[2]):
        b = bias[k0 + k]
        for r in range(min(tile, out_h - oh0)):
            dst = out[n, k0 + k, oh0 + r]
            src = ybuf[r]
            for w in range(out_w):
                dst[w] = src[w, k] + b


# --------------------------------------------------------------------------- the pipeline


@njit(inline="always")
def _input_tile_row(x, n, c0, h0, pad_top, pad_left, rows_buf, tmp_in, tile, tiles_w, vb, i0):
    """vb[:, i0 + tx] = input transform of tile (h0 / tile, tx) for every tx of one tile row.

    The tile row's alpha input rows are first copied, zero padded, from NCHW x into the
    channels-last ``rows_buf`` (alpha, cols, C): the transpose happens in cache, and the
    transforms then run along contiguous channels.
    """
    alpha, _, channels = rows_buf.shape
    height, width = x.shape[2], x.shape[3]
    for i in range(alpha):
        row = rows_buf[i]
        ih = h0 + i - pad_top
        if ih < 0 or ih >= height:
            row[:, :] = 0
            continue
        row[:pad_left, :] = 0
        row[pad_left + width:, :] = 0
        for c in range(channels):
            src = x[n, c0 + c, ih]
            for w in range(width):
                row[pad_left + w, c] = src[w]
    for tx in range(tiles_w):
        if tile == 4:
            _input_tile_f4(rows_buf, 4 * tx, tmp_in, vb, i0 + tx)
        else:
            _input_tile_f2(rows_buf, 2 * tx, tmp_in, vb, i0 + tx)


@njit(**JIT_PARALLEL)
def winograd_conv2d(x, c0, pad_top, pad_left, u, bias, k0, out, tile, tiles_h, tiles_w,
                    block_rows, workers):
    """out[:, k0:k0+K] = conv(x[:, c0:c0+C], weights transformed into u) + bias.

    x: NCHW input (zero padding still to apply); u: (P, C, K) transformed weights;
    out: (N, K_total, OH, OW). Each worker runs the whole pipeline on blocks of
    ``block_rows`` tile rows (input transform -> P single-threaded BLAS products ->
    output transform) so that the transform-domain block stays in its core's cache.
    """
    n_batch = x.shape[0]
    positions, channels, kg = u.shape
    alpha = tile + 2
    cols = tiles_w * tile + 2
    n_rows = n_batch * tiles_h
    n_blocks = -(-n_rows // block_rows)
    block = block_rows * tiles_w
    for worker in prange(workers):
        # Rows past the last tile of a short block are never read back: zeros keep them finite.
        vb = np.zeros((positions, block, channels), dtype=x.dtype)
        mb = np.empty((positions, block, kg), dtype=x.dtype)
        rows_buf = np.empty((alpha, cols, channels), dtype=x.dtype)
        tmp_in = np.empty((alpha, alpha, channels), dtype=x.dtype)
        tmp_out = np.empty((tile, alpha, kg), dtype=x.dtype)
        ybuf = np.empty((tile, tiles_w * tile, kg), dtype=x.dtype)
        for blk in range(worker, n_blocks, workers):
            q0 = blk * block_rows
            q1 = min(q0 + block_rows, n_rows)
            for q in range(q0, q1):
                n, ty = divmod(q, tiles_h)
                _input_tile_row(x, n, c0, ty * tile, pad_top, pad_left, rows_buf, tmp_in, tile,
                                tiles_w, vb, (q - q0) * tiles_w)
            for p in range(positions):
                np.dot(vb[p], u[p], mb[p])
            for q in range(q0, q1):
                n, ty = divmod(q, tiles_h)
                _output_tile_row(mb, (q - q0) * tiles_w, tmp_out, ybuf, tile, tiles_w, bias, k0,
                                 out, n, ty * tile)
    return out


@njit(**JIT_PARALLEL)
def winograd_conv2d_staged(x, c0, pad_top, pad_left, u, bias, k0, out, tile, tiles_h, tiles_w,
                           v, m, workers):
    """The same result as :func:`winograd_conv2d`, one stage at a time over all tiles.

    For deep layers the transformed weights (P * C * K values) outweigh a cache-sized
    block of tiles; then each position's weights must be read once, by one BLAS product
    over every tile (v: (P, T, C) -> m: (P, T, K)), rather than once per block.
    """
    n_batch = x.shape[0]
    positions, channels, kg = u.shape
    alpha = tile + 2
    cols = tiles_w * tile + 2
    n_rows = n_batch * tiles_h
    for worker in prange(workers):
        rows_buf = np.empty((alpha, cols, channels), dtype=x.dtype)
        tmp_in = np.empty((alpha, alpha, channels), dtype=x.dtype)
        for q in range(worker, n_rows, workers):
            n, ty = divmod(q, tiles_h)
            _input_tile_row(x, n, c0, ty * tile, pad_top, pad_left, rows_buf, tmp_in, tile,
                            tiles_w, v, q * tiles_w)
    for worker in prange(workers):
        for p in range(worker, positions, workers):
            np.dot(v[p], u[p], m[p])
    for worker in prange(workers):
        tmp_out = np.empty((tile, alpha, kg), dtype=x.dtype)
        ybuf = np.empty((tile, tiles_w * tile, kg), dtype=x.dtype)
        for q in range(worker, n_rows, workers):
            n, ty = divmod(q, tiles_h)
            _output_tile_row(m, q * tiles_w, tmp_out, ybuf, tile, tiles_w, bias, k0, out, n,
                             ty * tile)
    return out


_G = {2: G_F2, 4: G_F4}


def transformed_weights(weight, groups, tile):
    """U per group, (groups, P, C/groups, K/groups), from the cache when the weights are unchanged."""
    g_matrix = _G[tile]

    def compute():
        kg = weight.shape[0] // groups
        return [weight_transform(weight, g * kg, kg, g_matrix)
                for g in range(groups)]

    return TRANSFORMED_WEIGHTS.get(("winograd", tile), weight, compute)


def run_dilated(spec, x, weight, bias, tile):
    """A dilated 3x3 convolution as a plain one on each dilation phase of the input.

    Output (oh, ow) reads padded input at (oh + r*dh, ow + s*dw): with oh = a*dh + p, that is
    phase p of the rows, row a + r. So each of the dh*dw phase sub-images is convolved
    (dilation 1) by the same weights, as one batch, and the results interleave back.
    """
    dh, dw = spec.dilation_h, spec.dilation_w
    rows_q, cols_q = -(-spec.padded_height // dh), -(-spec.padded_width // dw)
    xph = np.empty((spec.batch, spec.in_channels, dh, dw, rows_q, cols_q), x.dtype)
    pad_phase_split(x, spec.pad_top, spec.pad_left, xph)
    phases = np.ascontiguousarray(xph.transpose(2, 3, 0, 1, 4, 5)).reshape(
        dh * dw * spec.batch, spec.in_channels, rows_q, cols_q)
    sub = replace(spec, batch=dh * dw * spec.batch, in_height=rows_q, in_width=cols_q,
                  pad_top=0, pad_bottom=0, pad_left=0, pad_right=0, dilation_h=1, dilation_w=1)
    sub_out = run_tile(sub, phases, weight, bias, tile).reshape(
        dh, dw, spec.batch, spec.out_channels, rows_q - 2, cols_q - 2)
    out = np.empty((spec.batch, spec.out_channels, spec.out_height, spec.out_width), x.dtype)
    for p in range(dh):
        for q in range(dw):
            target = out[:, :, p::dh, q::dw]
            target[...] = sub_out[p, q, :, :, :target.shape[2], :target.shape[3]]
    return out


def run_tile(spec, x, weight, bias, tile):
    if spec.dilation_h > 1 or spec.dilation_w > 1:
        return run_dilated(spec, x, weight, bias, tile)
    tiles_h = -(-spec.out_height // tile)
    tiles_w = -(-spec.out_width // tile)
    cg = spec.in_channels_per_group
    kg = spec.out_channels_per_group
    n_rows = spec.batch * tiles_h
    block_rows = winograd_block_rows(spec, tile, numba.get_num_threads())
    out = np.empty((spec.batch, spec.out_channels, spec.out_height, spec.out_width), x.dtype)
    u_groups = transformed_weights(weight, spec.groups, tile)
    staged = block_rows == n_rows
    if staged:
        workers = numba.get_num_threads()
        v = scratch("winograd_v", ((tile + 2) ** 2, n_rows * tiles_w, cg), x.dtype)
        m = scratch("winograd_m", ((tile + 2) ** 2, n_rows * tiles_w, kg), x.dtype)
    else:
        workers = min(numba.get_num_threads(), -(-n_rows // block_rows))
    with single_threaded_blas():
        for g in range(spec.groups):
            if staged:
                winograd_conv2d_staged(x, g * cg, spec.pad_top, spec.pad_left, u_groups[g], bias,
                                       g * kg, out, tile, tiles_h, tiles_w, v, m, workers)
            else:
                winograd_conv2d(x, g * cg, spec.pad_top, spec.pad_left, u_groups[g], bias,
                                g * kg, out, tile, tiles_h, tiles_w, block_rows, workers)
    return out


def run_f2(spec, x, weight, bias):
    return run_tile(spec, x, weight, bias, 2)


def run_f4(spec, x, weight, bias):
    return run_tile(spec, x, weight, bias, 4)
