"""Data movement shared by the CPU algorithms: zero padding with phase splitting.

Kernels read a padded copy of the input so that their inner loops carry no bounds tests.
"""

import numpy as np
from numba import njit

from .. import array_pool
from .dispatch import parallel_kernel, share
from .workspace import scratch


# Copies between arrays inside kernels are written as these loops, never as slice
# assignments (``dst[a:b] = src[c:d]``): Numba lowers an array-to-array slice assignment
# with a shape check whose error message is formatted at run time, which drags Numba's
# string formatting (thousands of IR lines) into every kernel that has one: measured, 3 s
# of the first compile in a process and more LLVM work in each kernel's module.


@njit(inline="always")
def copy1d(dst, src):
    """dst[i] = src[i] for i < len(dst) (``src`` at least as long)."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@njit(inline="always")
def copy2d(dst, src):
    """dst[i, j] = src[i, j] over dst's shape (``src`` at least as large)."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = src[i, j]


def new_output(spec, dtype) -> np.ndarray:
    """The fresh (N, K, OH, OW) array a kernel writes in full and the user receives (from
    the pool of reused blocks: see :mod:`numbaconv.array_pool`)."""
    return array_pool.empty((spec.batch, spec.out_channels, spec.out_height, spec.out_width),
                            dtype)


def phase_split_shape(spec) -> tuple:
    """(N, C, sh, sw, Hq, Wq): the padded input split by stride phase (see pad_phase_split)."""
    return (spec.batch, spec.in_channels, spec.stride_h, spec.stride_w,
            -(-spec.padded_height // spec.stride_h), -(-spec.padded_width // spec.stride_w))


@parallel_kernel
def subsample(x, stride_h, stride_w, out, worker, workers):
    """out[n, c, i, j] = x[n, c, i * stride_h, j * stride_w] over out's shape (N, C, OH, OW):
    the pixels an unpadded strided 1x1 convolution reads, one plane per job."""
    n_batch, channels, rows, cols = out.shape
    my_first, my_stop = share(worker, workers, n_batch * channels)
    for plane in range(my_first, my_stop):
        n = plane // channels
        c = plane % channels
        for i in range(rows):
            src = x[n, c, i * stride_h]
            dst = out[n, c, i]
            for j in range(cols):
                dst[j] = src[j * stride_w]
    return 0


@parallel_kernel
def transpose_into(src, dst, worker, workers):
    """dst[b, j, i] = src[b, i, j] (src (B, R, C), dst (B, C, R), both C-contiguous), a
    strip of 8 rows by 128 columns per job: each column of the strip is 8 reads a row
    apart and one run of 8 writes. Rows a power of two apart map to the same cache sets,
    and a taller block of them evicted itself (AVX2, 2 threads, 32 x 32 blocks against
    strips: 8 x 64 x 1024 1.25 -> 0.30 ms, 8 x 196 x 1024 3.6 -> 1.3, 512 x 4608 4.8 ->
    3.0); NumPy's copy of a transposed view was slower still (768 x 3072: 11.8 ms, 1.2
    in blocks on AVX-512). A batch of matrices in one launch (a gradient's images)."""
    batch, rows, cols = src.shape
    strip, width = 8, 128
    strips, column_blocks = -(-rows // strip), -(-cols // width)
    sf, df = src.reshape(src.size), dst.reshape(dst.size)
    step = np.uint64(cols)
    my_first, my_stop = share(worker, workers, batch * strips * column_blocks)
    for job in range(my_first, my_stop):
        b = job // (strips * column_blocks)
        i0 = job // column_blocks % strips * strip
        j0 = job % column_blocks * width
        i1, j1 = min(rows, i0 + strip), min(cols, j0 + width)
        base = b * rows * cols
        if i1 - i0 == strip:  # unrolled: 8 reads a row apart, 8 consecutive writes
            for j in range(j0, j1):
                d = np.uint64(base + j * rows + i0)
                s = np.uint64(base + i0 * cols + j)
                df[d] = sf[s]
                df[d + np.uint64(1)] = sf[s + step]
                df[d + np.uint64(2)] = sf[s + np.uint64(2) * step]
                df[d + np.uint64(3)] = sf[s + np.uint64(3) * step]
                df[d + np.uint64(4)] = sf[s + np.uint64(4) * step]
                df[d + np.uint64(5)] = sf[s + np.uint64(5) * step]
                df[d + np.uint64(6)] = sf[s + np.uint64(6) * step]
                df[d + np.uint64(7)] = sf[s + np.uint64(7) * step]
        else:  # the last rows
            for j in range(j0, j1):
                for i in range(i0, i1):
                    df[base + j * rows + i] = sf[base + i * cols + j]
    return 0


def transposed(a: np.ndarray) -> np.ndarray:
    """A new C-contiguous (C, R) array holding a.T for a 2-D ``a`` (:func:`transpose_into`)."""
    a = np.ascontiguousarray(a)
    out = np.empty(a.shape[::-1], a.dtype)
    if a.size:
        transpose_into(a[None], out[None])
    return out


def phase_split_input(spec, x, name: str):
    """x (N, C, H, W) zero padded and split by stride phase for ``spec``: (N, C, sh, sw, Hq, Wq).

    Without padding and with stride 1 that is x itself, seen through a reshape (no copy);
    otherwise it is built in the calling thread's scratch buffer ``name``.
    """
    unpadded = not (spec.pad_top or spec.pad_bottom or spec.pad_left or spec.pad_right)
    if unpadded and spec.stride_h == 1 and spec.stride_w == 1:
        return x.reshape(spec.batch, spec.in_channels, 1, 1, spec.in_height, spec.in_width)
    xph = scratch(name, phase_split_shape(spec), x.dtype)
    pad_phase_split(x, spec.pad_top, spec.pad_left, xph)
    return xph


@njit(inline="always")
def phase_split_plane(plane, row0, pad_top, pad_left, dst):
    """dst[p, q, i, j] = padded plane[(row0 + i) * sh + p, j * sw + q], zero outside the plane.

    ``plane``: one (H, W) channel; ``dst``: (sh, sw, rows, cols), from phase row ``row0``.
    Rows are short (a 14x14 map's are 16 values with its padding), so the loops stay
    plain: contiguous 1-D rows indexed from 0, no slice assignments (measured: 50 ns a
    row with them, most of a layer's copy time).
    """
    height, width = plane.shape
    stride_h, stride_w, rows, cols = dst.shape
    if stride_w == 2:
        _phase_split_plane_by_2(plane, row0, pad_top, pad_left, dst)
        return
    for p in range(stride_h):
        for q in range(stride_w):
            # Columns j whose source j * sw + q - pad_left lies inside the row: [j0, j1).
            j0 = min(cols, max(0, -(-(pad_left - q) // stride_w)))
            j1 = min(cols, max(j0, -(-(pad_left + width - q) // stride_w)))
            first = j0 * stride_w + q - pad_left  # the source column of j0
            for i in range(rows):
                ih = (row0 + i) * stride_h + p - pad_top
                row = dst[p, q, i]
                if ih < 0 or ih >= height:
                    for j in range(cols):
                        row[j] = 0
                    continue
                for j in range(j0):
                    row[j] = 0
                for j in range(j1, cols):
                    row[j] = 0
                inside = row[j0:j1]
                src = plane[ih]
                if stride_w == 1:  # a plain copy, vectorised
                    run = src[first:first + inside.shape[0]]
                    for j in range(inside.shape[0]):
                        inside[j] = run[j]
                else:
                    for j in range(inside.shape[0]):
                        inside[j] = src[first + j * stride_w]


@njit(inline="always")
def _phase_split_plane_by_2(plane, row0, pad_top, pad_left, dst):
    """:func:`phase_split_plane` for a column stride of 2 (strided 3x3 layers): both column
    phases of a source row in one pass, whose loads of even and odd columns LLVM turns
    into whole vectors and shuffles (a pass per phase loads every other value; measured
    on 512 x 28x28: 0.31 ms a pass per phase, 0.20 ms so)."""
    height, width = plane.shape
    stride_h, _, rows, cols = dst.shape
    # Column j of phase q reads source column 2j + q - pad_left, inside the row for j in
    # [j0a, j1a) (q = 0) and [j0b, j1b) (q = 1); [lo, hi) is inside for both.
    j0a = min(cols, max(0, -(-pad_left // 2)))
    j1a = min(cols, max(j0a, -(-(pad_left + width) // 2)))
    j0b = min(cols, max(0, -(-(pad_left - 1) // 2)))
    j1b = min(cols, max(j0b, -(-(pad_left + width - 1) // 2)))
    lo, hi = max(j0a, j0b), min(j1a, j1b)  # both phases inside
    for p in range(stride_h):
        for i in range(rows):
            ih = (row0 + i) * stride_h + p - pad_top
            even = dst[p, 0, i]
            odd = dst[p, 1, i]
            if ih < 0 or ih >= height:
                for j in range(cols):
                    even[j] = 0
                    odd[j] = 0
                continue
            src = plane[ih]
            for j in range(lo):  # the few columns where a phase reads padding
                even[j] = src[2 * j - pad_left] if j0a <= j < j1a else 0
                odd[j] = src[2 * j + 1 - pad_left] if j0b <= j < j1b else 0
            for j in range(max(lo, hi), cols):
                even[j] = src[2 * j - pad_left] if j0a <= j < j1a else 0
                odd[j] = src[2 * j + 1 - pad_left] if j0b <= j < j1b else 0
            if lo < hi:
                run = src[2 * lo - pad_left:]
                even_in = even[lo:hi]
                odd_in = odd[lo:hi]
                for j in range(hi - lo):
                    even_in[j] = run[2 * j]
                    odd_in[j] = run[2 * j + 1]


@parallel_kernel
def pad_phase_split(x, pad_top, pad_left, xph, worker, workers):
    """Fill xph (N, Cx, sh, sw, Hq, Wq), C-contiguous, with the zero-padded x (N, C, H, W)
    split by phase of the strides (channels past C, where Cx > C, are left as they are).

    ``xph[n, c, p, q, i, j] = padded[n, c, i * sh + p, j * sw + q]``, zero outside x.
    With the phases split, the input elements that consecutive outputs read sit next to
    each other for every stride and dilation, and a whole (rows x Wq) block of outputs
    reads one contiguous run per kernel tap: the direct kernel's loops vectorise.
    """
    n_batch, channels = x.shape[0], x.shape[1]
    if xph.shape[2] == xph.shape[3] == 1:
        _pad_planes(x, pad_top, pad_left, xph, worker, workers)
        return 0
    my_first, my_stop = share(worker, workers, n_batch * channels)
    for plane in range(my_first, my_stop):
        n = plane // channels
        c = plane % channels
        phase_split_plane(x[n, c], 0, pad_top, pad_left, xph[n, c])
    return 0


@njit(inline="always")
def _pad_planes(x, pad_top, pad_left, xph, worker, workers):
    """:func:`pad_phase_split` at stride 1 (xph C-contiguous, (N, Cx, 1, 1, Hq, Wq), Cx >=
    C: the channels past C left as they are): each plane zeroed whole, then x's rows
    copied in, on flat unsigned indices. Row by row (zero the margins, copy the run) a
    short row cost more in loop set-up than in copying (AVX2, 2 threads, us: 64 x 16 x 10
    x 10 padded by 4 175 -> 72, 64 x 6 x 14 x 14 unpadded 58 -> 37, 8 x 256 x 14 x 14
    padded by 1 257 -> 162, 8 x 64 x 56 x 56 377 -> 290)."""
    n_batch, channels, height, width = x.shape
    rows, cols = xph.shape[4], xph.shape[5]
    flat = xph.reshape(xph.size)
    zero = flat.dtype.type(0)
    plane_size = np.uint64(rows * cols)
    # x's rows [i0, i1) and columns [j0, j1) land inside (a padding may be negative: cropped)
    i0, i1 = max(0, -pad_top), min(height, rows - pad_top)
    j0, j1 = max(0, -pad_left), min(width, cols - pad_left)
    my_first, my_stop = share(worker, workers, n_batch * channels)
    for plane in range(my_first, my_stop):
        n = plane // channels
        c = plane % channels
        src = x[n, c]
        base = (np.uint64(n) * np.uint64(xph.shape[1]) + np.uint64(c)) * plane_size
        for i in range(base, base + plane_size):
            flat[i] = zero
        for i in range(i0, i1):
            row = src[i, j0:]
            start = base + np.uint64((i + pad_top) * cols + j0 + pad_left)
            for j in range(j1 - j0):
                flat[start + np.uint64(j)] = row[j]
    return 0

