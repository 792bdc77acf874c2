"""Winograd minimal filtering F(2x2, 3x3) and F(4x4, 3x3) on the CPU.

Kernels larger than 3x3 (dilation 1) run as their 3x3 pieces: zero-padded to whole
pieces, a 5x5 kernel is four 3x3 ones at offsets (0, 0), (0, 3), (3, 0), (3, 3), and the
convolution is the sum of each piece's convolution of the input shifted by its offset,
i.e. one 3x3 convolution of the shifted copies stacked as channels
(:func:`run_pieces`). Dilated 3x3 layers run on the dilation phases of the input
(:func:`run_dilated`).

Pipeline per group (see ``shared/winograd.md`` for the maths)::

    x (N, C, H, W) --input transform, a tile row at a time--> V (P, T, C)
                                        P = alpha^2 positions, T = N * tiles
    V[p] (T x C) @ U[p] (C x K) --matmul--> M (P, T, K)
    M --output_transform (+ bias)--> out (N, K, OH, OW)

The transforms work a tile row at a time, channels-last (each tile row's input rows
are transposed into a small cached buffer first), as long unit-stride loops over
(tiles x channels) that LLVM vectorises, whatever the image size; the per-position
products are :func:`.microkernel.matmul` calls, each on one of Numba's threads. The input is
zero padded up to whole tiles, and the output transform writes only the rows and
columns that exist, so ragged edges need no special case.

The transformed weights ``U`` depend only on the weights: they are cached (see
:mod:`numbaconv.cpu.weight_cache`) and recomputed whenever the weight values change.
"""


import numba
import numpy as np
from numba import njit

from .. import winograd_math
from ..registry import (winograd_block_rows, winograd_phase_spec, winograd_piece_spec,
                        winograd_pieces, winograd_weight_grad_takes_tiles)
from . import step_columns
from .layout import copy1d, new_output, pad_phase_split
from .dispatch import parallel_kernel, share
from ..isa import VECTOR_BYTES
from .microkernel import (matmul, transpose_block, transpose_tile, transpose_tile_bias,
                          workspace_size)
from .weight_cache import TRANSFORMED_WEIGHTS
from .workspace import scratch

# The 1-D transforms, inlined into the channel loops below.
_bt2 = njit(inline="always")(winograd_math.bt2)
_at2 = njit(inline="always")(winograd_math.at2)
_bt4 = njit(inline="always")(winograd_math.bt4)
_at4 = njit(inline="always")(winograd_math.at4)


@njit(inline="always")
def _bt4_rows(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5):
    """(o0..o5)[e] = B^T (d0..d5)[e] for every e: one long vectorisable loop."""
    for e in range(o0.size):
        a0, a1, a2, a3, a4, a5 = _bt4(d0[e], d1[e], d2[e], d3[e], d4[e], d5[e])
        o0[e] = a0
        o1[e] = a1
        o2[e] = a2
        o3[e] = a3
        o4[e] = a4
        o5[e] = a5


@njit(inline="always")
def _bt2_rows(d0, d1, d2, d3, o0, o1, o2, o3):
    for e in range(o0.size):
        a0, a1, a2, a3 = _bt2(d0[e], d1[e], d2[e], d3[e])
        o0[e] = a0
        o1[e] = a1
        o2[e] = a2
        o3[e] = a3


@njit(inline="always")
def _at4_rows(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3):
    for e in range(o0.size):
        y0, y1, y2, y3 = _at4(m0[e], m1[e], m2[e], m3[e], m4[e], m5[e])
        o0[e] = y0
        o1[e] = y1
        o2[e] = y2
        o3[e] = y3


@njit(inline="always")
def _at2_rows(m0, m1, m2, m3, o0, o1):
    for e in range(o0.size):
        y0, y1 = _at2(m0[e], m1[e], m2[e], m3[e])
        o0[e] = y0
        o1[e] = y1


# --------------------------------------------------------------------------- weights


#: Input channels whose taps :func:`weight_transform` transposes at a time (16 x 9 rows
#: of K values: 144 KiB for 256 output channels).
WEIGHT_TRANSFORM_CHANNELS = 16


@parallel_kernel
def weight_transform(weight, g_matrix, u, worker, workers):
    """u[p, c, k] = (G g G^T)[p] for the 3x3 kernel g = weight[k, c] (weight (K, C, 3, 3),
    C-contiguous).

    The taps of a block of channels are first transposed into a (taps, K) buffer, in
    LANES x LANES blocks in registers (``transpose_block``), so that every loop of the
    transform runs along the contiguous output-channel axis, as do the rows u[p, c] it
    writes. (A transposed copy of the whole weight made before the kernel, as NumPy
    would, was a pass over memory as long as the transform's own, 0.10 + 0.09 ms for
    128 -> 128 on AVX-512; a training step transforms new weights on every call.)
    """
    kout, cin = weight.shape[0], weight.shape[1]
    alpha = g_matrix.shape[0]
    block = WEIGHT_TRANSFORM_CHANNELS
    taps = np.empty((block * 9, kout), dtype=u.dtype)  # a row of K per (channel, tap)
    tmp = np.empty((alpha, 3, kout), dtype=u.dtype)  # G g, per column s
    flat, taps_flat = weight.reshape(weight.size), taps.reshape(taps.size)
    my_first, my_stop = share(worker, workers, cin)
    for c0 in range(my_first, my_stop, block):
        c1 = min(my_stop, c0 + block)
        transpose_block(flat, c0 * 9, cin * 9, taps_flat, 0, kout, kout, (c1 - c0) * 9)
        for c in range(c0, c1):
            first = (c - c0) * 9
            for a in range(alpha):
                ga0, ga1, ga2 = g_matrix[a, 0], g_matrix[a, 1], g_matrix[a, 2]
                for s in range(3):
                    r0, r1, r2 = taps[first + s], taps[first + 3 + s], taps[first + 6 + s]
                    t = tmp[a, s]
                    for k in range(kout):
                        t[k] = ga0 * r0[k] + ga1 * r1[k] + ga2 * r2[k]
            for a in range(alpha):
                t0, t1, t2 = tmp[a, 0], tmp[a, 1], tmp[a, 2]
                for b in range(alpha):
                    gb0, gb1, gb2 = g_matrix[b, 0], g_matrix[b, 1], g_matrix[b, 2]
                    dst = u[a * alpha + b, c]
                    for k in range(kout):
                        dst[k] = t0[k] * gb0 + t1[k] * gb1 + t2[k] * gb2
    return 0


# --------------------------------------------------------------------------- tile-row transforms
# A tile row (all tiles sharing the same input rows) is transformed at once. Its input
# rows are laid out channels-last with the columns split by phase modulo the tile size,
# rows_buf[i, w % tile, w // tile, c], so that both passes of the 2-D transform are long
# unit-stride loops over (tiles x channels): the column a tile's tap j reads for tile tx
# is w = tile * tx + j, i.e. phase j % tile, position tx + j // tile. Long loops let LLVM
# vectorise with little overhead; per-tile loops over 64 channels spent most of their
# time entering and leaving loops.


@njit(inline="always")
def _stage_row(x, n, c0, ih, pad_left, row_stage):
    """row_stage[pad_left + iw, c] = x[n, c0 + c, ih, iw]: one input row, channels last.

    A transpose, done in LANES x LANES blocks in registers (:func:`transpose_tile`);
    the ragged channels and columns past the last whole block are moved one by one.
    """
    channels = row_stage.shape[1]
    width = x.shape[3]
    item = x.itemsize
    lanes = VECTOR_BYTES // item
    whole_c = channels // lanes * lanes
    whole_w = width // lanes * lanes if x.strides[3] == item else 0
    if whole_w:
        ld_channel = x.strides[1] // item
        row0 = (n * x.strides[0] + c0 * x.strides[1] + ih * x.strides[2]) // item
        for cb in range(0, whole_c, lanes):
            for wb in range(0, whole_w, lanes):
                transpose_tile(x, row0 + cb * ld_channel + wb, ld_channel, row_stage,
                               (pad_left + wb) * channels + cb, channels)
    for c in range(channels):
        src = x[n, c0 + c, ih]
        for iw in range(whole_w if c < whole_c else 0, width):
            row_stage[pad_left + iw, c] = src[iw]


@njit(inline="always")
def _load_tile_rows(x, n, c0, h0, pad_top, pad_left, row_stage, rows_buf):
    """rows_buf[i, p, q, c] = padded x[n, c0 + c, h0 + i, q * tile + p] (NCHW -> phase split).

    Each input row goes first into ``row_stage`` (columns, C), channels last, then its
    columns are dealt out by phase as contiguous channel vectors. The stage's padding
    columns are never written: zeroed when allocated, they stay zero.
    """
    alpha, tile, q_count, channels = rows_buf.shape
    height = x.shape[2]
    for i in range(alpha):
        ih = h0 + i - pad_top
        if ih < 0 or ih >= height:
            rows_buf[i, :, :, :] = 0
            continue
        _stage_row(x, n, c0, ih, pad_left, row_stage)
        for p in range(tile):
            for q in range(q_count):
                copy1d(rows_buf[i, p, q], row_stage[q * tile + p])


@njit(inline="always")
def _input_tile_row(x, n, c0, h0, pad_top, pad_left, row_stage, rows_buf, tmp_in, tiles_w, v,
                    t0):
    """v[:, t0:t0 + tiles_w] = B^T d B for every tile d of the tile row at padded row h0.

    row_stage: zeros (tile * (tiles_w + 1), C); rows_buf: (alpha, tile, tiles_w + 1, C);
    tmp_in: (alpha, tile * (tiles_w + 1) * C).
    """
    alpha, tile, q_count, channels = rows_buf.shape
    _load_tile_rows(x, n, c0, h0, pad_top, pad_left, row_stage, rows_buf)
    rows = rows_buf.reshape(alpha, tile * q_count * channels)
    seg = tiles_w * channels
    half = tmp_in.reshape(alpha, tile, q_count * channels)
    base = t0 * channels
    if tile == 4:
        _bt4_rows(rows[0], rows[1], rows[2], rows[3], rows[4], rows[5],  # B^T along rows
                  tmp_in[0], tmp_in[1], tmp_in[2], tmp_in[3], tmp_in[4], tmp_in[5])
        for a in range(6):  # ... then B along columns: tap j at phase j % 4, shift j // 4
            g = half[a]
            _bt4_rows(g[0, :seg], g[1, :seg], g[2, :seg], g[3, :seg],
                      g[0, channels:channels + seg], g[1, channels:channels + seg],
                      v[6 * a].reshape(-1)[base:base + seg],
                      v[6 * a + 1].reshape(-1)[base:base + seg],
                      v[6 * a + 2].reshape(-1)[base:base + seg],
                      v[6 * a + 3].reshape(-1)[base:base + seg],
                      v[6 * a + 4].reshape(-1)[base:base + seg],
                      v[6 * a + 5].reshape(-1)[base:base + seg])
    else:
        _bt2_rows(rows[0], rows[1], rows[2], rows[3], tmp_in[0], tmp_in[1], tmp_in[2], tmp_in[3])
        for a in range(4):  # tap j at phase j % 2, shift j // 2
            g = half[a]
            _bt2_rows(g[0, :seg], g[1, :seg], g[0, channels:channels + seg],
                      g[1, channels:channels + seg],
                      v[4 * a].reshape(-1)[base:base + seg],
                      v[4 * a + 1].reshape(-1)[base:base + seg],
                      v[4 * a + 2].reshape(-1)[base:base + seg],
                      v[4 * a + 3].reshape(-1)[base:base + seg])


@njit(inline="always")
def _input_buffers(tile, tiles_w, channels, like):
    """Per-share scratch of :func:`_input_tile_row`, of ``like``'s dtype: (row_stage,
    rows_buf, tmp_in); the stage's padding columns must start zero."""
    alpha = tile + 2
    row_stage = np.zeros((tile * (tiles_w + 1), channels), dtype=like.dtype)
    rows_buf = np.empty((alpha, tile, tiles_w + 1, channels), dtype=like.dtype)
    tmp_in = np.empty((alpha, tile * (tiles_w + 1) * channels), dtype=like.dtype)
    return row_stage, rows_buf, tmp_in


@njit(inline="always")
def _output_buffers(tile, tiles_w, kg, like):
    """Per-worker scratch of :func:`_output_tile_row`, of ``like``'s dtype: (s_buf, y_buf, t_buf).

    y_buf holds, per output row i of a tile row, a (columns, K) matrix whose row count is
    rounded up to whole transpose blocks, plus LANES spare values: the last blocks of a
    row read past its K channels (values that are never stored), into the next row or
    the spare ones.
    """
    lanes = VECTOR_BYTES // like.itemsize
    columns = -(-tile * tiles_w // lanes) * lanes
    s_buf = np.empty((tile, tile + 2, tiles_w * kg), dtype=like.dtype)
    y_buf = np.zeros(tile * columns * kg + lanes, dtype=like.dtype)
    t_buf = np.empty((lanes, lanes), dtype=like.dtype)
    return s_buf, y_buf, t_buf


@njit(inline="always")
def _output_tile_row(m, t0, s_buf, y_buf, t_buf, tiles_w, bias, k0, out, n, oh0):
    """out[n, k0:, oh0:oh0 + tile, :] = A^T M A + bias for the tile row of tiles t0.. t0+tiles_w.

    Returns how many of the written outputs are not finite (see ``run_tile``).
    m: (P, T, K); s_buf, y_buf, t_buf: from :func:`_output_buffers`. The row pass leaves
    s_buf[i, b, tx * K + k]; the column pass writes output column w = tile * tx + j of
    row i as y_buf[(i * columns + w) * K + k], channels last; each (LANES columns x LANES
    channels) block of that is transposed in registers into ``t_buf`` and stored, plus
    bias, along the NCHW output rows.
    """
    tile, alpha, seg = s_buf.shape
    channels = m.shape[2]
    lanes = t_buf.shape[0]
    columns = (y_buf.size - lanes) // (tile * channels)
    base = t0 * channels
    if tile == 4:
        for b in range(6):  # A^T along the rows ...
            _at4_rows(m[b].reshape(-1)[base:base + seg], m[6 + b].reshape(-1)[base:base + seg],
                      m[12 + b].reshape(-1)[base:base + seg],
                      m[18 + b].reshape(-1)[base:base + seg],
                      m[24 + b].reshape(-1)[base:base + seg],
                      m[30 + b].reshape(-1)[base:base + seg],
                      s_buf[0, b], s_buf[1, b], s_buf[2, b], s_buf[3, b])
        for i in range(4):  # ... then A along the columns
            q = s_buf[i]
            for tx in range(tiles_w):
                e, y = tx * channels, (i * columns + 4 * tx) * channels
                _at4_rows(q[0, e:e + channels], q[1, e:e + channels], q[2, e:e + channels],
                          q[3, e:e + channels], q[4, e:e + channels], q[5, e:e + channels],
                          y_buf[y:y + channels], y_buf[y + channels:y + 2 * channels],
                          y_buf[y + 2 * channels:y + 3 * channels],
                          y_buf[y + 3 * channels:y + 4 * channels])
    else:
        for b in range(4):
            _at2_rows(m[b].reshape(-1)[base:base + seg], m[4 + b].reshape(-1)[base:base + seg],
                      m[8 + b].reshape(-1)[base:base + seg],
                      m[12 + b].reshape(-1)[base:base + seg], s_buf[0, b], s_buf[1, b])
        for i in range(2):
            q = s_buf[i]
            for tx in range(tiles_w):
                e, y = tx * channels, (i * columns + 2 * tx) * channels
                _at2_rows(q[0, e:e + channels], q[1, e:e + channels], q[2, e:e + channels],
                          q[3, e:e + channels], y_buf[y:y + channels],
                          y_buf[y + channels:y + 2 * channels])
    out_h, out_w = out.shape[2], out.shape[3]
    nonfinite = 0
    item = out.itemsize
    ld_out = out.strides[1] // item
    for i in range(min(tile, out_h - oh0)):  # channels-last rows -> NCHW rows, plus bias
        row0 = (n * out.strides[0] + k0 * out.strides[1] + (oh0 + i) * out.strides[2]) // item
        for w0 in range(0, out_w, lanes):
            width = min(lanes, out_w - w0)
            for kb in range(0, channels, lanes):
                src = (i * columns + w0) * channels + kb
                if width == lanes and kb + lanes <= channels:  # a whole block: straight out
                    nonfinite += transpose_tile_bias(y_buf, src, channels, out,
                                                     row0 + kb * ld_out + w0, ld_out, bias, k0 + kb)
                    continue
                transpose_tile(y_buf, src, channels, t_buf, 0, lanes)
                for kk in range(min(lanes, channels - kb)):
                    bk = bias[k0 + kb + kk]
                    dst = out[n, k0 + kb + kk, oh0 + i]
                    src = t_buf[kk]
                    for j in range(width):
                        value = src[j] + bk
                        dst[w0 + j] = value
                        nonfinite += not np.isfinite(value)
    return nonfinite


# --------------------------------------------------------------------------- the pipeline


@parallel_kernel
def winograd_conv2d(x, c0, pad_top, pad_left, u, bias, k0, out, tile, tiles_h, tiles_w,
                    block_rows, worker, workers):
    """out[:, k0:k0+K] = conv(x[:, c0:c0+C], weights transformed into u) + bias.

    Returns the number of outputs that are not finite. x: NCHW input (zero padding still
    to apply); u: (P, C, K) transformed weights; out: (N, K_total, OH, OW). Each share
    runs the whole pipeline on blocks of ``block_rows`` tile rows (input transform -> P
    matrix products -> output transform), blocks worker, worker + workers, ..., so that
    the transform-domain block stays in its core's cache.
    """
    n_batch = x.shape[0]
    positions, channels, kg = u.shape
    n_rows = n_batch * tiles_h
    n_blocks = -(-n_rows // block_rows)
    block = block_rows * tiles_w
    # Rows past the last tile of a short block are never read back: zeros keep them finite.
    vb = np.zeros((positions, block, channels), dtype=x.dtype)
    mb = np.empty((positions, block, kg), dtype=x.dtype)
    row_stage, rows_buf, tmp_in = _input_buffers(tile, tiles_w, channels, x)
    s_buf, y_buf, t_buf = _output_buffers(tile, tiles_w, kg, x)
    work = np.empty(workspace_size(channels), dtype=x.dtype)
    nonfinite = 0
    my_first, my_stop = share(worker, workers, n_blocks)
    for blk in range(my_first, my_stop):
        q0 = blk * block_rows
        q1 = min(q0 + block_rows, n_rows)
        for q in range(q0, q1):
            n, ty = divmod(q, tiles_h)
            _input_tile_row(x, n, c0, ty * tile, pad_top, pad_left, row_stage, rows_buf,
                            tmp_in, tiles_w, vb, (q - q0) * tiles_w)
        for p in range(positions):
            matmul(vb[p], u[p], mb[p], work)
        for q in range(q0, q1):
            n, ty = divmod(q, tiles_h)
            nonfinite += _output_tile_row(mb, (q - q0) * tiles_w, s_buf, y_buf, t_buf,
                                          tiles_w, bias, k0, out, n, ty * tile)
    return nonfinite


# The same result one stage at a time over all tiles, each stage a kernel of its own (the
# stages must finish in order). For deep layers the transformed weights (P * C * K values)
# outweigh a cache-sized block of tiles; then each position's weights must be read once,
# by one matrix product over every tile (v: (P, T, C) -> m: (P, T, K)), rather than once
# per block.


@parallel_kernel
def winograd_input_stage(x, c0, pad_top, pad_left, v, tile, tiles_h, tiles_w, worker, workers):
    """v[:, t] = B^T d B for every tile d of x[:, c0:c0 + C] (tile rows worker, worker +
    workers, ...)."""
    row_stage, rows_buf, tmp_in = _input_buffers(tile, tiles_w, v.shape[2], x)
    my_first, my_stop = share(worker, workers, x.shape[0] * tiles_h)
    for q in range(my_first, my_stop):
        n, ty = divmod(q, tiles_h)
        _input_tile_row(x, n, c0, ty * tile, pad_top, pad_left, row_stage, rows_buf, tmp_in,
                        tiles_w, v, q * tiles_w)
    return 0


@parallel_kernel
def winograd_product_stage(v, u, m, accumulate, worker, workers):
    """m[p] = v[p] @ u[p] (``accumulate``: m[p] +=) for this share's positions p
    (consecutive ones); also the weight gradient's products (``winograd_weight_grad``)."""
    work = np.empty(workspace_size(u.shape[1]), dtype=v.dtype)
    my_first, my_stop = share(worker, workers, u.shape[0])
    for p in range(my_first, my_stop):
        matmul(v[p], u[p], m[p], work, accumulate)
    return 0


@parallel_kernel
def winograd_output_stage(m, bias, k0, out, tile, tiles_h, tiles_w, worker, workers):
    """out[:, k0:k0 + K] = A^T M A + bias for every tile; returns the non-finite count."""
    s_buf, y_buf, t_buf = _output_buffers(tile, tiles_w, m.shape[2], m)
    nonfinite = 0
    my_first, my_stop = share(worker, workers, out.shape[0] * tiles_h)
    for q in range(my_first, my_stop):
        n, ty = divmod(q, tiles_h)
        nonfinite += _output_tile_row(m, q * tiles_w, s_buf, y_buf, t_buf, tiles_w, bias, k0,
                                      out, n, ty * tile)
    return nonfinite


def transformed_weights(weight, groups, tile, pieces=(1, 1)):
    """U per group, (groups, P, C/groups, K/groups), from the cache when the weights are
    unchanged; with ``pieces`` (rows, columns) > (1, 1), of the 3x3 pieces of the kernel
    stacked as input channels (see :func:`piece_weights`), C/groups times the pieces."""
    g_matrix = winograd_math.G_MATRICES[tile]

    def compute():
        kernels3 = piece_weights(weight, *pieces) if pieces != (1, 1) else weight
        kg = weight.shape[0] // groups
        g_typed = g_matrix.astype(weight.dtype)
        transformed = []
        for g in range(groups):
            u = np.empty(((tile + 2) ** 2, kernels3.shape[1], kg), weight.dtype)
            weight_transform(np.ascontiguousarray(kernels3[g * kg:(g + 1) * kg]), g_typed, u)
            transformed.append(u)
        return transformed

    return TRANSFORMED_WEIGHTS.get(("winograd", tile, pieces), weight, compute)


def piece_weights(weight, rows, cols):
    """(K, C', kH, kW) weights -> (K, rows * cols * C', 3, 3): the kernel zero-padded to
    rows x cols 3x3 pieces, piece (a, b) = taps [3a, 3a + 3) x [3b, 3b + 3), its channels
    at (a * cols + b) * C' + c, as :func:`stack_pieces` stacks the input."""
    k, c, kh, kw = weight.shape
    padded = np.zeros((k, c, 3 * rows, 3 * cols), weight.dtype)
    padded[:, :, :kh, :kw] = weight
    pieces = padded.reshape(k, c, rows, 3, cols, 3).transpose(0, 2, 4, 1, 3, 5)
    return np.ascontiguousarray(pieces).reshape(k, rows * cols * c, 3, 3)


@parallel_kernel
def stack_pieces(x, pad_top, pad_left, piece_cols, groups, xs, worker, workers):
    """xs[n, (g * P + a * piece_cols + b) * C' + c, i, j] = the zero-padded input
    x[n, g * C' + c] at row 3a + i, column 3b + j (C' channels per group, P pieces): the
    input of a kernel's 3x3 pieces, (OH + 2) x (OW + 2) per piece, as channels of one
    unpadded 3x3 convolution (``registry.winograd_piece_spec``). A (image, channel) per job.
    """
    n_batch, channels, height, width = x.shape
    cg = channels // groups
    stacked, rows, cols = xs.shape[1], xs.shape[2], xs.shape[3]
    per_group = stacked // groups  # pieces x C'
    my_first, my_stop = share(worker, workers, n_batch * stacked)
    for job in range(my_first, my_stop):
        n, sc = job // stacked, job % stacked
        g, piece, c = sc // per_group, (sc % per_group) // cg, sc % cg
        top = 3 * (piece // piece_cols) - pad_top  # input row of output row 0's first tap
        left = 3 * (piece % piece_cols) - pad_left
        j0 = min(cols, max(0, -left))  # [j0, j1): the columns inside the input
        j1 = max(j0, min(cols, width - left))
        src, dst = x[n, g * cg + c], xs[n, sc]
        for i in range(rows):
            row = dst[i]
            y = top + i
            if y < 0 or y >= height:
                for j in range(cols):
                    row[j] = 0
                continue
            run = src[y]
            for j in range(j0):
                row[j] = 0
            for j in range(j0, j1):
                row[j] = run[j + left]
            for j in range(j1, cols):
                row[j] = 0
    return 0


def run_dilated(spec, x, weight, bias, tile, match_torch_nonfinite=False):
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
    sub = winograd_phase_spec(spec)
    sub_out = run_tile(sub, phases, weight, bias, tile, match_torch_nonfinite,
                       keeps_tiles=False).reshape(
        dh, dw, spec.batch, spec.out_channels, rows_q - 2, cols_q - 2)
    out = new_output(spec, x.dtype)
    for p in range(dh):
        for q in range(dw):
            target = out[:, :, p::dh, q::dw]
            target[...] = sub_out[p, q, :, :, :target.shape[2], :target.shape[3]]
    return out


def run_tile(spec, x, weight, bias, tile, match_torch_nonfinite=False, keeps_tiles=True):
    """Winograd F(tile x tile, 3x3) for ``spec`` (larger kernels as 3x3 pieces);
    ``keeps_tiles`` False where ``spec`` is not the layer's own (see :func:`_run_plain`).

    Non-finite values: a transform mixes a whole tile, so one inf or NaN input turns
    every output of its tiles (and of the tiles sharing its input rows) into NaN,
    where a direct convolution (and torch) spoils only the outputs whose window holds
    it, and may give inf rather than NaN. The kernels count non-finite outputs as they
    write them; with ``match_torch_nonfinite`` (what ``algorithm="auto"`` asks for) a
    result that has any is recomputed by the GEMM algorithm, whose propagation is
    torch's. Finite inputs never pay for that.
    """
    if spec.dilation_h > 1 or spec.dilation_w > 1:
        return run_dilated(spec, x, weight, bias, tile, match_torch_nonfinite)
    pieces = winograd_pieces(spec)
    if pieces == (1, 1):
        out, nonfinite = _run_plain(spec, x, transformed_weights(weight, spec.groups, tile),
                                    bias, tile, keeps_tiles)
    else:
        out, nonfinite = run_pieces(spec, x, weight, bias, tile)
    if nonfinite and match_torch_nonfinite:
        from . import gemm

        return gemm.run(spec, x, weight, bias)
    return out


def run_pieces(spec, x, weight, bias, tile):
    """A kernel larger than 3x3 as one 3x3 convolution of its pieces (see the module
    docstring) -> (out, count of non-finite outputs)."""
    rows, cols = winograd_pieces(spec)
    plain = winograd_piece_spec(spec)
    stacked = np.empty((plain.batch, plain.in_channels, plain.in_height, plain.in_width),
                       x.dtype)
    stack_pieces(x, spec.pad_top, spec.pad_left, cols, spec.groups, stacked)
    u_groups = transformed_weights(weight, spec.groups, tile, (rows, cols))
    return _run_plain(plain, stacked, u_groups, bias, tile)


def _run_plain(spec, x, u_groups, bias, tile, keeps_tiles=False):
    """The Winograd pipeline for a 3x3, dilation-1 ``spec`` with weights transformed into
    ``u_groups`` -> (out, count of non-finite outputs). ``keeps_tiles``: ``spec`` and
    ``x`` are the layer's own (not its dilation phases or kernel pieces), whose
    transformed input tiles a training step may keep for its weight gradient."""
    tiles_h = -(-spec.out_height // tile)
    tiles_w = -(-spec.out_width // tile)
    cg = spec.in_channels_per_group
    kg = spec.out_channels_per_group
    n_rows = spec.batch * tiles_h
    block_rows = winograd_block_rows(spec, tile, numba.get_num_threads())
    out = new_output(spec, x.dtype)
    v_shape = ((tile + 2) ** 2, n_rows * tiles_w, cg)
    # In a training step, transformed tiles that the weight gradient will transform again
    # are kept for it (step_columns); the stages then write them all out.
    v = step_columns.columns_for(x, spec, v_shape, "winograd") if keeps_tiles \
        and step_columns.keeping() and tile == 4 and spec.groups == 1 \
        and winograd_weight_grad_takes_tiles(spec) else None
    staged = block_rows == n_rows or v is not None
    if staged:
        if v is None:
            v = scratch("winograd_v", v_shape, x.dtype)
        m = scratch("winograd_m", ((tile + 2) ** 2, n_rows * tiles_w, kg), x.dtype)
    nonfinite = 0
    for g in range(spec.groups):
        if staged:
            winograd_input_stage(x, g * cg, spec.pad_top, spec.pad_left, v, tile, tiles_h,
                                 tiles_w)
            winograd_product_stage(v, u_groups[g], m, False)
            nonfinite += winograd_output_stage(m, bias, g * kg, out, tile, tiles_h, tiles_w)
        else:
            nonfinite += winograd_conv2d(
                x, g * cg, spec.pad_top, spec.pad_left, u_groups[g], bias, g * kg, out, tile,
                tiles_h, tiles_w, block_rows, workers=-(-n_rows // block_rows))
    return out, nonfinite


def run_f2(spec, x, weight, bias, match_torch_nonfinite=False):
    return run_tile(spec, x, weight, bias, 2, match_torch_nonfinite)


def run_f4(spec, x, weight, bias, match_torch_nonfinite=False):
    return run_tile(spec, x, weight, bias, 4, match_torch_nonfinite)
