"""The weight gradient of a 3x3 stride-1 convolution by Winograd F(4x4, 3x3).

The forward pass computes each 4x4 output tile as Y = A^T [(G w G^T) * (B^T d B)] A
(``cpu.winograd``); its adjoint gives the weight gradient from the same tiles::

    dL/dw = G^T [ sum over tiles of (A dY A^T) * (B^T d B) ] G

so that, per transform-domain position p (36 of them), the sum over tiles is one matrix
product::

    x (N, C, H, W) --input transform (the forward's)--> V (P, T, C)
    dY (N, K, OH, OW) --A dY A^T per 4x4 tile--------> Q (P, K, T)
    Q[p] (K x T) @ V[p] (T x C) ----------------------> M (P, K, C)
    M --G^T M G per (k, c)----------------------------> dW (K, C, 3, 3)

36 products of depth T instead of 9 x 16 per tile and channel pair: a quarter of the
multiply-adds of the direct sum. Zero padding is the input transform's (tiles past the
output's last row and column read a gradient of zero). Four kernels, one per stage, each
over all tiles (the stages must finish in order).
"""

import numpy as np
from numba import njit

from .dispatch import parallel_kernel, share
from .layout import transpose_into
from ..registry import winograd_weight_grad_chunk
from . import step_columns
from .weight_grad import positions_last
from .winograd import winograd_input_stage, winograd_product_stage
from .workspace import scratch

TILE = 4
ALPHA = TILE + 2
POSITIONS = ALPHA * ALPHA


@njit(inline="always")
def _a4(g0, g1, g2, g3):
    """A (g0..g3): the transpose of ``winograd_math.at4``, 6 values from a tile's 4."""
    s02, s13 = g0 + g2, g1 + g3
    f02, f13 = g0 + 4 * g2, 2 * g1 + 8 * g3
    return g0, s02 + s13, s02 - s13, f02 + f13, f02 - f13, g3


@njit(inline="always")
def _a4_rows(g0, g1, g2, g3, o0, o1, o2, o3, o4, o5):
    """(o0..o5)[e] = A (g0..g3)[e] for every e: one long vectorisable loop."""
    for e in range(o0.size):
        a0, a1, a2, a3, a4, a5 = _a4(g0[e], g1[e], g2[e], g3[e])
        o0[e] = a0
        o1[e] = a1
        o2[e] = a2
        o3[e] = a3
        o4[e] = a4
        o5[e] = a5


@njit(inline="always")
def _gt3(m0, m1, m2, m3, m4, m5, quarter, sixth, twelfth, twenty_fourth):
    """G^T (m0..m5) for F(4x4, 3x3)'s G (``winograd_math.G_F4``): 3 values from 6 (the
    fractions passed in the arrays' dtype, so that float32 stays float32)."""
    s12, d12 = m1 + m2, m2 - m1
    s34, d34 = m3 + m4, m3 - m4
    return (m0 * quarter - s12 * sixth + s34 * twenty_fourth,
            d12 * sixth + d34 * twelfth,
            (s34 - s12) * sixth + m5)


@njit(inline="always")
def _gt3_rows(m0, m1, m2, m3, m4, m5, o0, o1, o2, fractions):
    """(o0..o2)[e] = G^T (m0..m5)[e] for every e: one long vectorisable loop."""
    quarter, sixth, twelfth, twenty_fourth = fractions
    for e in range(o0.size):
        r0, r1, r2 = _gt3(m0[e], m1[e], m2[e], m3[e], m4[e], m5[e], quarter, sixth, twelfth,
                          twenty_fourth)
        o0[e] = r0
        o1[e] = r1
        o2[e] = r2


@parallel_kernel
def gradient_tile_transform(ext, qt, out_h, out_w, tiles_h, tiles_w, worker, workers):
    """qt[p, t] = (A g A^T)[p] for every 4x4 tile g of the gradient, all output channels
    at once (zero past its last row and column), t = (n * tiles_h + ty) * tiles_w + tx;
    one tile row per job. ext (N, OH * OW, K): the gradient channels last
    (``weight_grad.positions_last``), so that every loop runs along the K channels;
    qt (P, T, K)."""
    channels = ext.shape[2]
    zero = np.zeros(channels, ext.dtype)
    cols = np.empty((TILE, ALPHA, channels), ext.dtype)  # A along each row of the tile ...
    my_first, my_stop = share(worker, workers, ext.shape[0] * tiles_h)
    for row in range(my_first, my_stop):
        n, ty = row // tiles_h, row % tiles_h
        for tx in range(tiles_w):
            for i in range(TILE):
                oh = ty * TILE + i
                ow = tx * TILE
                g0 = ext[n, oh * out_w + ow] if oh < out_h and ow < out_w else zero
                g1 = ext[n, oh * out_w + ow + 1] if oh < out_h and ow + 1 < out_w else zero
                g2 = ext[n, oh * out_w + ow + 2] if oh < out_h and ow + 2 < out_w else zero
                g3 = ext[n, oh * out_w + ow + 3] if oh < out_h and ow + 3 < out_w else zero
                _a4_rows(g0, g1, g2, g3, cols[i, 0], cols[i, 1], cols[i, 2], cols[i, 3],
                         cols[i, 4], cols[i, 5])
            t = row * tiles_w + tx
            for b in range(ALPHA):  # ... then A down the tile's columns, position a * 6 + b
                _a4_rows(cols[0, b], cols[1, b], cols[2, b], cols[3, b], qt[b, t],
                         qt[ALPHA + b, t], qt[2 * ALPHA + b, t], qt[3 * ALPHA + b, t],
                         qt[4 * ALPHA + b, t], qt[5 * ALPHA + b, t])
    return 0


@parallel_kernel
def weight_output_transform(m, taps, worker, workers):
    """taps[k, 3 * r + s] = (G^T M[:, k] G)[r, s] for every input channel at once (along
    which every loop runs); one output channel k per job. m (P, K, C); taps (K, 9, C)."""
    fractions = m.dtype.type(0.25), m.dtype.type(1 / 6), m.dtype.type(1 / 12), \
        m.dtype.type(1 / 24)
    half = np.empty((ALPHA, 3, m.shape[2]), m.dtype)  # G along b, per row a ...
    my_first, my_stop = share(worker, workers, m.shape[1])
    for k in range(my_first, my_stop):
        for a in range(ALPHA):
            _gt3_rows(m[a * ALPHA, k], m[a * ALPHA + 1, k], m[a * ALPHA + 2, k],
                      m[a * ALPHA + 3, k], m[a * ALPHA + 4, k], m[a * ALPHA + 5, k],
                      half[a, 0], half[a, 1], half[a, 2], fractions)
        for s in range(3):  # ... then G down the columns: tap (r, s) at 3 * r + s
            _gt3_rows(half[0, s], half[1, s], half[2, s], half[3, s], half[4, s], half[5, s],
                      taps[k, s], taps[k, 3 + s], taps[k, 6 + s], fractions)
    return 0


def run(spec, x, grad, out):
    """out (K, C, 3, 3) = the weight gradient of the 3x3, stride-1, dilation-1, ungrouped
    zero-padded convolution ``spec``, for x (N, C, H, W) and grad (N, K, OH, OW), both
    C-contiguous of the spec's dtype; a chunk of images at a time
    (``registry.winograd_weight_grad_chunk``), the products of each added to the last's."""
    tiles_h, tiles_w = -(-spec.out_height // TILE), -(-spec.out_width // TILE)
    chunk = winograd_weight_grad_chunk(spec)
    k, c = spec.out_channels, spec.in_channels
    m = scratch("weight_grad_winograd_products", (POSITIONS, k, c), x.dtype)
    for n0 in range(0, spec.batch, chunk):
        images = min(chunk, spec.batch - n0)
        tiles = images * tiles_h * tiles_w
        # the forward pass's tiles, where a training step kept them (every image)
        kept = step_columns.take(x, spec, "winograd") if chunk == spec.batch else None
        v = kept if kept is not None else \
            scratch("weight_grad_winograd_input", (POSITIONS, tiles, c), x.dtype)
        ext = scratch("weight_grad_winograd_grad_rows",
                      (images, spec.out_height * spec.out_width, k), x.dtype)
        qt = scratch("weight_grad_winograd_grad_tiles", (POSITIONS, tiles, k), x.dtype)
        q = scratch("weight_grad_winograd_grad", (POSITIONS, k, tiles), x.dtype)
        xs, gs = x[n0:n0 + images], grad[n0:n0 + images]
        if kept is None:
            winograd_input_stage(xs, 0, spec.pad_top, spec.pad_left, v, TILE, tiles_h,
                                 tiles_w, workers=images * tiles_h)
        positions_last(gs, spec.out_width, ext, workers=images * spec.out_height)
        gradient_tile_transform(ext, qt, spec.out_height, spec.out_width, tiles_h, tiles_w,
                                workers=images * tiles_h)
        transpose_into(qt, q)
        winograd_product_stage(q, v, m, n0 > 0, workers=POSITIONS)
    taps = scratch("weight_grad_winograd_taps", (k, 9, c), x.dtype)
    weight_output_transform(m, taps, workers=k)
    transpose_into(taps, out.reshape(k, c, 9))
    return out
