"""Dot products of contiguous rows, 4 x 4 at a time: out[g, i, j] = a[g * M + i] . b[g * D + j].

A weight gradient is such a product when both its sides keep their positions along
rows: the output gradient (K, positions) and the im2col matrix (Cg * kH * kW, positions),
or a pointwise layer's input itself. The register-tiled matrix product
(:mod:`.microkernel`) wants one side transposed (positions down the rows) and pads each
of its panels (NV vectors of output columns) with zero columns: a group with 8 output
channels used an eighth of a 64-wide panel, and the transposes of both sides cost as
much as the product (RegNet's 208 channels in groups of 8, 3x3 on 14x14, batch 8).

Here a tile is 4 rows of ``a`` against 4 rows of ``b``: 16 sums, each of which LLVM
vectorises along the rows (``fastmath`` reassoc: a vector of partial sums per output,
added up once per pass), 8 loads per 16 multiply-adds. Rows are taken ``row_block``
elements at a time: the ``b`` rows of a group's block stay in L2 while every 4 rows of
``a`` pass over them. A ragged last tile repeats its last row (computed, not stored).
"""

from numba import njit

from .dispatch import parallel_kernel, share


@parallel_kernel
def row_dots(a, b, out, row_block, accumulate, worker, workers):
    """out[g, i, j] (+)= a[g * M + i, :] . b[g * D + j, :] for out (G, M, D), a (G * M,
    depth), b (G * D, depth), rows contiguous. Jobs: each group's rows of ``out`` in as
    many 4-row-aligned parts as it takes for the workers to have one each."""
    groups, rows, cols = out.shape
    depth = a.shape[1]
    quads = -(-rows // 4)
    parts = max(1, min(quads, -(-workers // groups)))
    per_part = -(-quads // parts) * 4
    my_first, my_stop = share(worker, workers, groups * parts)
    for job in range(my_first, my_stop):
        g = job // parts
        i_start = (job - g * parts) * per_part
        i_end = min(rows, i_start + per_part)
        for p0 in range(0, depth, row_block):
            p1 = min(depth, p0 + row_block)
            add = accumulate or p0 > 0
            for i0 in range(i_start, i_end, 4):
                a0 = a[g * rows + min(i0, rows - 1), p0:p1]
                a1 = a[g * rows + min(i0 + 1, rows - 1), p0:p1]
                a2 = a[g * rows + min(i0 + 2, rows - 1), p0:p1]
                a3 = a[g * rows + min(i0 + 3, rows - 1), p0:p1]
                for j0 in range(0, cols, 4):
                    b0 = b[g * cols + min(j0, cols - 1), p0:p1]
                    b1 = b[g * cols + min(j0 + 1, cols - 1), p0:p1]
                    b2 = b[g * cols + min(j0 + 2, cols - 1), p0:p1]
                    b3 = b[g * cols + min(j0 + 3, cols - 1), p0:p1]
                    (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31,
                     s32, s33) = _dots4x4(a0, a1, a2, a3, b0, b1, b2, b3)
                    _store_row(out, g, i0, j0, add, s00, s01, s02, s03)
                    _store_row(out, g, i0 + 1, j0, add, s10, s11, s12, s13)
                    _store_row(out, g, i0 + 2, j0, add, s20, s21, s22, s23)
                    _store_row(out, g, i0 + 3, j0, add, s30, s31, s32, s33)
    return 0


@njit(inline="always")
def _dots4x4(a0, a1, a2, a3, b0, b1, b2, b3):
    """The 16 dot products of rows a0..a3 with rows b0..b3 (1-D, of one length), row-major:
    8 loads per 16 multiply-adds, each sum a vector of partial sums (fastmath reassoc)."""
    zero = a0.dtype.type(0)
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for p in range(a0.shape[0]):
        x0, x1, x2, x3 = a0[p], a1[p], a2[p], a3[p]
        y0, y1, y2, y3 = b0[p], b1[p], b2[p], b3[p]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)


@parallel_kernel
def shifted_row_dots(a, a_starts, a_image, b, b_starts, b_image, length, images, partials,
                     row_block, worker, workers):
    """partials[worker, i, j] = the sum over this share's images n of the dot product
    a[n * a_image + a_starts[i] :][:length] . b[n * b_image + b_starts[j] :][:length]:
    :func:`row_dots` on rows that start anywhere in two flat arrays, such as the rows a
    convolution's taps read in its padded input (a weight gradient without an im2col
    copy: ``weight_grad``). Images are the shares' jobs (each share its own partial sums,
    ``partials`` (shares, R, D), zeroed by the caller); ``row_block`` elements of every
    row at a time, so that the ``b`` rows' block stays in L2 while the ``a`` rows pass."""
    rows, cols = partials.shape[1], partials.shape[2]
    mine = partials[worker]
    my_first, my_stop = share(worker, workers, images)
    for n in range(my_first, my_stop):
        a_first, b_first = n * a_image, n * b_image
        for p0 in range(0, length, row_block):
            p1 = min(length, p0 + row_block)
            for i0 in range(0, rows, 4):
                a0 = a[a_first + a_starts[min(i0, rows - 1)] + p0:][:p1 - p0]
                a1 = a[a_first + a_starts[min(i0 + 1, rows - 1)] + p0:][:p1 - p0]
                a2 = a[a_first + a_starts[min(i0 + 2, rows - 1)] + p0:][:p1 - p0]
                a3 = a[a_first + a_starts[min(i0 + 3, rows - 1)] + p0:][:p1 - p0]
                for j0 in range(0, cols, 4):
                    b0 = b[b_first + b_starts[min(j0, cols - 1)] + p0:][:p1 - p0]
                    b1 = b[b_first + b_starts[min(j0 + 1, cols - 1)] + p0:][:p1 - p0]
                    b2 = b[b_first + b_starts[min(j0 + 2, cols - 1)] + p0:][:p1 - p0]
                    b3 = b[b_first + b_starts[min(j0 + 3, cols - 1)] + p0:][:p1 - p0]
                    sums = _dots4x4(a0, a1, a2, a3, b0, b1, b2, b3)
                    for q in range(16):
                        i, j = i0 + q // 4, j0 + q % 4
                        if i < rows and j < cols:
                            mine[i, j] += sums[q]
    return 0


@njit(inline="always")
def _store_row(out, g, i, j0, add, v0, v1, v2, v3):
    """out[g, i, j0:j0 + 4] (+)= (v0, v1, v2, v3), within the array's bounds."""
    rows, cols = out.shape[1], out.shape[2]
    if i >= rows:
        return
    row = out[g, i]
    values = (v0, v1, v2, v3)
    for d in range(min(4, cols - j0)):
        row[j0 + d] = row[j0 + d] + values[d] if add else values[d]
