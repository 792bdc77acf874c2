"""Max and average pooling and max unpooling on the CPU: whole image planes per share.

torch's CPU rules are followed operation for operation: a window's maximum takes a NaN
as soon as it meets one (and keeps the index of the last NaN), padding never wins a
maximum, and an average divides as ``count_include_pad``/``divisor_override`` say.

Pooling is memory-bound (a few operations per value read). Without indices, the
kernels (:func:`max_pool2d_rows`, :func:`avg_pool2d_rows`) compute a whole row of
outputs at a time: over the row's outputs whose windows lie inside the input (the row's
"interior"), one unrolled vectorised loop for the square windows networks use (2x2 and
3x3, strides 1 and 2), else one vectorised pass per tap of the window; the few outputs
at its ends by the per-window loop. Per window, as the indexed kernel does it, the window
loops innermost leave the vector units idle and cost a branch per value.
"""

import math

import numpy as np
from numba import njit

from ..config import JIT
from .dispatch import parallel_kernel, share
from .layout import copy1d


@njit(inline="always")
def _window_bounds(width, height, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw):
    """(y0, y1, x0, x1): output (oy, ox)'s window's rows y0, y0 + dh, ... below y1 and
    columns x0, x0 + dw, ... below x1 that lie inside the (H, W) plane (torch's hstart,
    hend, wstart, wend)."""
    y0 = oy * sh - ph
    while y0 < 0:  # the first row inside the input
        y0 += dh
    y1 = min(oy * sh - ph + (kh - 1) * dh + 1, height)
    x0 = ox * sw - pw
    while x0 < 0:
        x0 += dw
    x1 = min(ox * sw - pw + (kw - 1) * dw + 1, width)
    return y0, y1, x0, x1


@njit(inline="always")
def _argmax_in_window(src, width, height, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw):
    """(maximum, its flat index in the (H, W) plane) of output (oy, ox)'s window: the
    first largest value in row-major order, a NaN winning, as torch picks it."""
    y0, y1, x0, x1 = _window_bounds(width, height, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw)
    best = -np.inf
    best_index = y0 * width + x0
    if dh == 1 and dw == 1:  # (a range with a step computes its length by division)
        for y in range(y0, y1):
            for at in range(y * width + x0, y * width + x1):
                value = src[at]
                if value > best or math.isnan(value):
                    best = value
                    best_index = at
        return best, best_index
    for y in range(y0, y1, dh):
        for z in range(x0, x1, dw):
            value = src[y * width + z]
            if value > best or math.isnan(value):
                best = value
                best_index = y * width + z
    return best, best_index


@parallel_kernel
def max_pool2d_kernel(x, out, indices, kh, kw, sh, sw, ph, pw, dh, dw, worker, workers):
    """out and the flat in-plane indices of each window's maximum, one (n, c) plane per
    job (see :func:`_argmax_in_window`)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    my_first, my_stop = share(worker, workers, x.shape[0] * channels)
    for plane in range(my_first, my_stop):
        n, c = plane // channels, plane % channels
        src = x[n, c].reshape(height * width)
        for oy in range(out_h):
            for ox in range(out_w):
                best, best_index = _argmax_in_window(src, width, height, oy, ox, kh, kw, sh,
                                                     sw, ph, pw, dh, dw)
                out[n, c, oy, ox] = best
                indices[n, c, oy, ox] = best_index
    return 0


@parallel_kernel
def max_pool2d_backward(x, out, grad, dx, kh, kw, sh, sw, ph, pw, dh, dw, worker, workers):
    """dx: max pooling's input gradient, each output's gradient added onto the input value
    its window took (the rule of :func:`_argmax_in_window`, found again from x and the
    pooled output ``out``: no indices kept from the forward pass), one (n, c) plane per
    job. x, dx (N, C, H, W); out, grad (N, C, OH, OW)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = grad.shape[2], grad.shape[3]
    zero = dx.dtype.type(0)
    pairs = kh == kw == sh == sw == 2 and ph == pw == 0 and dh == dw == 1 and \
        2 * out_h <= height and 2 * out_w <= width  # (ceil_mode's last windows can be cut)
    xf, gf, dxf = x.reshape(x.size), grad.reshape(grad.size), dx.reshape(dx.size)
    firsts = np.empty(out_w, np.int64)
    none = height * width
    lo, hi = _interior_columns(width, out_w, kw, sw, pw, dw)
    my_first, my_stop = share(worker, workers, x.shape[0] * channels)
    for plane in range(my_first, my_stop):
        if pairs:
            _pairs_backward(xf, gf, dxf, plane, height, width, out_h, out_w)
            continue
        n, c = plane // channels, plane % channels
        src = x[n, c].reshape(height * width)
        dst = dx[n, c].reshape(height * width)
        taken_plane = out[n, c].reshape(out_h * out_w)
        for i in range(height * width):
            dst[i] = zero
        for oy in range(out_h):
            y0 = oy * sh - ph
            unrolled = kh == kw and dh == 1 and dw == 1 and y0 >= 0 and y0 + kh <= height \
                and lo < hi and _unrolled_firsts(src, y0 * width + lo * sw - pw, width,
                                                 taken_plane, oy * out_w + lo, hi - lo,
                                                 firsts[lo:hi], none, kh, sw)
            if unrolled:  # the windows cut by the padding, one by one
                for ox in range(lo):
                    firsts[ox] = none
                for ox in range(hi, out_w):
                    firsts[ox] = none
            else:
                _row_firsts(src, width, height, oy, out[n, c, oy], kh, kw, sh, sw, ph, pw,
                            dh, dw, firsts)
            g, taken = grad[n, c, oy], out[n, c, oy]
            for ox in range(out_w):
                best_index = firsts[ox]
                if best_index == none or taken[ox] != taken[ox]:  # a NaN, or cut windows
                    # (after the unrolled loop): the scan's own choice
                    _, best_index = _argmax_in_window(src, width, height, oy, ox, kh, kw, sh,
                                                      sw, ph, pw, dh, dw)
                dst[best_index] += g[ox]
    return 0


@njit(inline="always")
def _row_firsts(src, width, height, oy, taken, kh, kw, sh, sw, ph, pw, dh, dw, firsts):
    """firsts[ox] = the flat in-plane index of output (oy, ox)'s window's first element
    equal to ``taken[ox]``, its maximum: the element :func:`_argmax_in_window` picks, as
    the first largest compares equal to the maximum and nothing before it does (-0.0 and
    0.0 alike). For the whole row of windows at once: tap by tap, a minimum over selects
    along the row (through strided views indexed from 0, so LLVM vectorises), where a
    loop per window ran a few scalar compares each (ResNet's 3x3 stride 2 on 8 x 64 x 32
    x 32: 1.5 ms; a scan's compare-and-replace, whose branches random data mispredicted,
    2.0). NaN outputs are left to the caller."""
    out_w = taken.size
    none = height * width
    for ox in range(out_w):
        firsts[ox] = none
    for r in range(kh):
        y = oy * sh - ph + r * dh
        if y < 0 or y >= height:
            continue
        for s in range(kw):
            shift = s * dw - pw  # input column of output column ox: ox * sw + shift
            j0 = min(out_w, max(0, -(shift // sw)))  # the outputs whose column is inside
            j1 = min(out_w, max(j0, -((shift - width) // sw)))
            if j1 == j0:
                continue
            start = y * width + j0 * sw + shift
            values = src[start:start + (j1 - j0 - 1) * sw + 1:sw]
            wanted, found = taken[j0:j1], firsts[j0:j1]
            for j in range(j1 - j0):
                found[j] = min(found[j], start + j * sw if values[j] == wanted[j] else none)
    for ox in range(out_w):  # a window with no element equal keeps its first (as the scan)
        if firsts[ox] == none:
            y0, _, x0, _ = _window_bounds(width, height, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw)
            firsts[ox] = y0 * width + x0


@njit(inline="always")
def _pairs_backward(x, grad, dx, plane, height, width, out_h, out_w):
    """:func:`max_pool2d_backward` of one plane for 2x2 windows at stride 2 (no padding,
    no dilation, no window cut by ceil_mode): the windows do not overlap, so each input
    value gets its window's gradient or zero. The value the window took (the rule of
    :func:`_argmax_in_window`) is found without the scan's branches, which mispredicted
    on random data (0.7 ms for LeNet's 64 x 6 x 28 x 28): in a row of windows without NaN
    and with finite gradients as the first largest value, by 0/1 factors; in the others
    by the running maximum's selects. Flat unsigned indices (see
    :func:`_square_window_rows`)."""
    zero = dx.dtype.type(0)
    w = np.uint64(width)
    first = np.uint64(plane) * np.uint64(height) * w
    covered_h, covered_w = np.uint64(2 * out_h), np.uint64(2 * out_w)
    for y in range(np.uint64(height)):  # a last odd row and column no window reads
        start = covered_w if y < covered_h else np.uint64(0)
        for i in range(first + y * w + start, first + y * w + w):
            dx[i] = zero
    g_first = np.uint64(plane) * np.uint64(out_h) * np.uint64(out_w)
    two = np.uint64(2)
    kind = dx.dtype.type
    one = kind(1)
    for oy in range(np.uint64(out_h)):
        top = first + two * oy * w
        bottom = top + w
        g_row = g_first + oy * np.uint64(out_w)
        if _plain_windows(x, grad, top, bottom, g_row, out_w):
            # No NaN to find and no gradient that 0 times would make NaN: the window's
            # first largest value takes the gradient, by compares turned into 0 or 1
            # factors, which LLVM keeps free of branches (the selects below became
            # branches that random data mispredicts: AVX2, one thread, 17 ns a window
            # with them, 4.5-10 so; LeNet's 64 x 6 x 28 x 28, 2 threads, 0.68 -> 0.27 ms)
            for ox in range(np.uint64(out_w)):
                left, right = two * ox, two * ox + np.uint64(1)
                a, b, c, d = x[top + left], x[top + right], x[bottom + left], x[bottom + right]
                ab = a if a >= b else b
                cd = c if c >= d else d
                m = ab if ab >= cd else cd
                is_a = kind(a == m)
                is_b = kind(b == m) * (one - is_a)
                is_c = kind(c == m) * (one - is_a - is_b)
                g = grad[g_row + ox]
                dx[top + left] = g * is_a
                dx[top + right] = g * is_b
                dx[bottom + left] = g * is_c
                dx[bottom + right] = g * (one - is_a - is_b - is_c)
            continue
        for ox in range(np.uint64(out_w)):
            a = x[top + two * ox]
            b = x[top + two * ox + np.uint64(1)]
            c = x[bottom + two * ox]
            d = x[bottom + two * ox + np.uint64(1)]
            # the running maximum's rule of _argmax_in_window, as selects: which of the
            # four (0-3) last replaced it is the value torch took
            take = (b > a) | (b != b)
            best = b if take else a
            at = 1 if take else 0
            take = (c > best) | (c != c)
            best = c if take else best
            at = 2 if take else at
            at = 3 if (d > best) | (d != d) else at
            g = grad[g_row + ox]
            dx[top + two * ox] = g if at == 0 else zero
            dx[top + two * ox + np.uint64(1)] = g if at == 1 else zero
            dx[bottom + two * ox] = g if at == 2 else zero
            dx[bottom + two * ox + np.uint64(1)] = g if at == 3 else zero


@njit(inline="always")
def _plain_windows(x, grad, top, bottom, g_row, out_w):
    """Whether the row of 2x2 windows at ``top`` (its second row at ``bottom``) holds no
    NaN and its gradients are all finite (flat unsigned offsets)."""
    plain = True
    for i in range(np.uint64(2 * out_w)):
        plain &= (x[top + i] == x[top + i]) & (x[bottom + i] == x[bottom + i])
    for i in range(np.uint64(out_w)):
        plain &= np.abs(grad[g_row + i]) < np.inf
    return plain


@njit(inline="always")
def _interior_columns(width, out_w, kw, sw, pw, dw):
    """[lo, hi): the output columns whose whole window lies inside the input row."""
    lo = min(out_w, -(-pw // sw))
    hi = max(lo, min(out_w, (width - 1 + pw - (kw - 1) * dw) // sw + 1))
    return lo, hi


@njit(inline="always")
def _larger(best, value):
    """torch's rule for a running maximum: a larger value or a NaN replaces it (no
    short-circuit ``or``: a select, which vectorises)."""
    return value if (value > best) | (value != value) else best


def _square_window_rows(size, stride, take_max):
    """An inlined loop computing ``count`` outputs of one row: dst[start + j] for j <
    count is the maximum (NaN winning) or the sum times ``scale`` of the ``size`` x
    ``size`` window whose top-left value is src[first + stride * j], its rows ``width``
    values apart. ``src`` and ``dst`` are whole arrays flattened (1-D, contiguous).

    ``size`` and ``stride`` are constants of the generated code, so LLVM unrolls the
    window and vectorises along the row with the window's values in registers. Passes of
    one tap at a time over the row store and reload every partial result: 4-8x slower on
    2x2 and 3x3 windows (a 14x14 map's 7 outputs a row are all load and store).

    Indices are unsigned: Numba wraps a negative signed index around (a compare and a
    select on every load), which keeps LLVM from vectorising the loads, and views of
    each row cost more than a short row's work. Measured (AVX2, one thread, 2x2 stride-2
    average): 512x14x14 201 -> 30 us, 256x28x28 226 -> 49 us, 128x56x56 288 -> 93 us.
    """
    unsigned_stride = np.uint64(stride)
    taps = tuple(np.uint64(t) for t in range(size))

    @njit(inline="always")
    def rows(src, first, width, dst, start, count, scale):
        first, width, start = np.uint64(first), np.uint64(width), np.uint64(start)
        second = first + width  # the window's second row (and third, for 3x3)
        third = second + width
        for j in range(np.uint64(count)):
            base = unsigned_stride * j
            if take_max:
                best = src[first + base]
                for t in taps:
                    best = _larger(best, src[first + base + t])
                    best = _larger(best, src[second + base + t])
                    if size == 3:
                        best = _larger(best, src[third + base + t])
                dst[start + j] = best
            else:
                total = scale * 0  # zero of the dtype (an input value times 0 could be NaN)
                for t in taps:
                    total += src[first + base + t] + src[second + base + t]
                    if size == 3:
                        total += src[third + base + t]
                dst[start + j] = total * scale

    return rows


#: The windows networks pool with, unrolled: (size, stride) -> (max rows, average rows).
_MAX_2_1, _AVG_2_1 = _square_window_rows(2, 1, True), _square_window_rows(2, 1, False)
_MAX_2_2, _AVG_2_2 = _square_window_rows(2, 2, True), _square_window_rows(2, 2, False)
_MAX_3_1, _AVG_3_1 = _square_window_rows(3, 1, True), _square_window_rows(3, 1, False)
_MAX_3_2, _AVG_3_2 = _square_window_rows(3, 2, True), _square_window_rows(3, 2, False)


@njit(inline="always")
def _unrolled_max(src, first, width, dst, start, count, size, stride):
    """The unrolled maximum loop for (size, stride); False when there is none."""
    if size == 2 and stride == 1:
        _MAX_2_1(src, first, width, dst, start, count, 1.0)
    elif size == 2 and stride == 2:
        _MAX_2_2(src, first, width, dst, start, count, 1.0)
    elif size == 3 and stride == 1:
        _MAX_3_1(src, first, width, dst, start, count, 1.0)
    elif size == 3 and stride == 2:
        _MAX_3_2(src, first, width, dst, start, count, 1.0)
    else:
        return False
    return True


@njit(inline="always")
def _unrolled_average(src, first, width, dst, start, count, scale, size, stride):
    """The unrolled sum loop (times ``scale``) for (size, stride); False when there is none."""
    if size == 2 and stride == 1:
        _AVG_2_1(src, first, width, dst, start, count, scale)
    elif size == 2 and stride == 2:
        _AVG_2_2(src, first, width, dst, start, count, scale)
    elif size == 3 and stride == 1:
        _AVG_3_1(src, first, width, dst, start, count, scale)
    elif size == 3 and stride == 2:
        _AVG_3_2(src, first, width, dst, start, count, scale)
    else:
        return False
    return True


def _square_window_firsts(size, stride):
    """An inlined loop finding, for ``count`` windows of one row, the first element equal
    to the value the window took: firsts[j] = the flat index in ``src`` of the first (in
    scan order) of the ``size`` x ``size`` window whose top-left value is src[first +
    stride * j] that equals taken[start + j] (``none`` if no element does: a NaN).
    As :func:`_square_window_rows`: the window unrolled, unsigned indices, vectorised
    along the row, where a pass per tap over the row (``_row_firsts``) stored and
    reloaded every index (ResNet's 3x3 stride 2 on 8 x 64 x 32 x 32: 1.6 ms)."""
    unsigned_stride = np.uint64(stride)
    taps = tuple(np.uint64(t) for t in range(size))

    @njit(inline="always")
    def firsts_of_row(src, first, width, taken, start, count, firsts, none):
        first, width, start = np.uint64(first), np.uint64(width), np.uint64(start)
        for j in range(np.uint64(count)):
            base = first + unsigned_stride * j
            wanted = taken[start + j]
            found = np.uint64(none)
            # The window walked backwards from its last element: the match written
            # last is the first in scan order (rows, then columns).
            for r in taps:
                for t in taps:
                    at = base + (np.uint64(size - 1) - r) * width + (np.uint64(size - 1) - t)
                    found = at if src[at] == wanted else found
            firsts[j] = found

    return firsts_of_row


_FIRSTS_2_1, _FIRSTS_2_2 = _square_window_firsts(2, 1), _square_window_firsts(2, 2)
_FIRSTS_3_1, _FIRSTS_3_2 = _square_window_firsts(3, 1), _square_window_firsts(3, 2)


@njit(inline="always")
def _unrolled_firsts(src, first, width, taken, start, count, firsts, none, size, stride):
    """The unrolled first-equal loop for (size, stride); False when there is none."""
    if size == 2 and stride == 1:
        _FIRSTS_2_1(src, first, width, taken, start, count, firsts, none)
    elif size == 2 and stride == 2:
        _FIRSTS_2_2(src, first, width, taken, start, count, firsts, none)
    elif size == 3 and stride == 1:
        _FIRSTS_3_1(src, first, width, taken, start, count, firsts, none)
    elif size == 3 and stride == 2:
        _FIRSTS_3_2(src, first, width, taken, start, count, firsts, none)
    else:
        return False
    return True


# The rows' slow paths (windows with no unrolled loop, windows reaching into the padding)
# are functions of their own, called rather than inlined: inlined, their code in the row
# loop made the unrolled path 1.5-2x slower on 7-14 wide rows (measured, AVX2).
SLOW_PATH = dict(JIT, cache=False)  # compiled into the kernels' own cache entries


@njit(inline="always")
def _running_max(acc, src):
    """acc[i] = the larger of acc[i] and src[i] (NaN winning) over acc's length: indexed
    from 0 through slices, so that LLVM sees no negative index to wrap and vectorises."""
    for i in range(acc.size):
        acc[i] = _larger(acc[i], src[i])


@parallel_kernel
def max_pool2d_separable(x, out, kh, kw, sh, sw, ph, pw, dh, dw, worker, workers):
    """max_pool2d without indices, stride 1, separably: each plane copied into a scratch
    plane whose padding (and ceil_mode's overhang) is -inf, then the maximum over each
    window's columns, then over its rows (kh + kw comparisons an output instead of
    kh * kw). Both passes run along the whole flat plane, rows and all, as single
    vectorised loops (a 14-wide row is shorter than one AVX-512 step); their values past
    a row's last window are never read. The padding never wins and a NaN does, as in
    torch. (GoogLeNet's 3x3 pools on 14x14 and 7x7 planes.)"""
    n_batch, channels, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    rows = max(height + ph, out_h + (kh - 1) * dh)  # padded coordinates
    cols = max(width + pw, out_w + (kw - 1) * dw)
    padded = np.full(rows * cols, -np.inf, x.dtype)  # only the input's part is rewritten
    across = np.empty(rows * cols - (kw - 1) * dw, x.dtype)  # maximum over columns
    down = np.empty(out_h * cols - (kw - 1) * dw, x.dtype)  # then over rows
    first, stop = share(worker, workers, n_batch * channels)
    for plane in range(first, stop):
        n, c = plane // channels, plane % channels
        for y in range(height):
            at = (ph + y) * cols + pw
            copy1d(padded[at:at + width], x[n, c, y])
        copy1d(across, padded[:across.size])
        for s in range(1, kw):
            _running_max(across, padded[s * dw:s * dw + across.size])
        copy1d(down, across[:down.size])
        for r in range(1, kh):
            _running_max(down, across[r * dh * cols:r * dh * cols + down.size])
        for oy in range(out_h):
            copy1d(out[n, c, oy], down[oy * cols:oy * cols + out_w])
    return 0


@parallel_kernel
def max_pool2d_rows(x, out, kh, kw, sh, sw, ph, pw, dh, dw, worker, workers):
    """max_pool2d without indices, a row of outputs at a time (see the module docstring)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    lo, hi = _interior_columns(width, out_w, kw, sw, pw, dw)
    x_flat, out_flat = x.reshape(x.size), out.reshape(out.size)  # views: x, out contiguous
    my_first, my_stop = share(worker, workers, x.shape[0] * channels)
    for plane in range(my_first, my_stop):
        for oy in range(out_h):
            y0 = oy * sh - ph
            if not (kh == kw and dh == 1 and dw == 1 and y0 >= 0 and y0 + kh <= height
                    and _unrolled_max(x_flat, (plane * height + y0) * width + lo * sw - pw,
                                      width, out_flat, (plane * out_h + oy) * out_w + lo,
                                      hi - lo, kh, sw)):
                _max_row_by_taps(x, out, plane, oy, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw)
            if lo > 0 or hi < out_w:
                _max_row_ends(x, out, plane, oy, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw)
    return 0


@njit(**SLOW_PATH)
def _max_row_by_taps(x, out, plane, oy, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw):
    """Row ``oy``'s outputs [lo, hi) of ``plane`` (= n * C + c), one pass per tap."""
    n, c = plane // x.shape[1], plane % x.shape[1]
    height = x.shape[2]
    acc = out[n, c, oy, lo:hi]
    for j in range(acc.shape[0]):
        acc[j] = -np.inf
    y0 = oy * sh - ph
    for r in range(kh):
        y = y0 + r * dh
        if y < 0 or y >= height:
            continue
        src = x[n, c, y]
        for s in range(kw):
            first = lo * sw - pw + s * dw
            if sw == 1:
                run = src[first:first + acc.shape[0]]
                for j in range(acc.shape[0]):
                    acc[j] = _larger(acc[j], run[j])
            else:
                for j in range(acc.shape[0]):
                    acc[j] = _larger(acc[j], src[first + j * sw])


@njit(**SLOW_PATH)
def _max_row_ends(x, out, plane, oy, lo, hi, kh, kw, sh, sw, ph, pw, dh, dw):
    """Row ``oy``'s outputs outside [lo, hi), window by window."""
    n, c = plane // x.shape[1], plane % x.shape[1]
    for ox in range(lo):
        out[n, c, oy, ox] = _window_max(x[n, c], oy, ox, kh, kw, sh, sw, ph, pw, dh, dw)
    for ox in range(hi, out.shape[3]):
        out[n, c, oy, ox] = _window_max(x[n, c], oy, ox, kh, kw, sh, sw, ph, pw, dh, dw)


@njit(inline="always")
def _window_max(plane, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw):
    """The maximum of one window, skipping taps in the padding."""
    height, width = plane.shape
    best = -np.inf
    for r in range(kh):
        y = oy * sh - ph + r * dh
        if y < 0 or y >= height:
            continue
        for s in range(kw):
            z = ox * sw - pw + s * dw
            if 0 <= z < width:
                value = plane[y, z]
                if value > best or math.isnan(value):
                    best = value
    return best


@parallel_kernel
def avg_pool2d_rows(x, out, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override,
                    worker, workers):
    """avg_pool2d, a row of outputs at a time (see the module docstring). The interior's
    windows hold kh * kw input values: their sums, in the input's precision as torch's,
    are divided by that or by ``divisor_override`` (when not 0)."""
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    lo, hi = _interior_columns(width, out_w, kw, sw, pw, 1)
    # in the input's precision: a float64 factor would halve the vectors' width
    scale = np.full(1, 1.0 / (divisor_override if divisor_override != 0 else kh * kw),
                    out.dtype)[0]
    x_flat, out_flat = x.reshape(x.size), out.reshape(out.size)  # views: x, out contiguous
    my_first, my_stop = share(worker, workers, x.shape[0] * channels)
    for plane in range(my_first, my_stop):
        for oy in range(out_h):
            y0 = oy * sh - ph
            if y0 >= 0 and y0 + kh <= height:  # whole windows in these rows: the interior
                if not (kh == kw and _unrolled_average(
                        x_flat, (plane * height + y0) * width + lo * sw - pw, width,
                        out_flat, (plane * out_h + oy) * out_w + lo, hi - lo, scale, kh, sw)):
                    _average_row_by_taps(x, out, plane, oy, lo, hi, kh, kw, sh, sw, ph, pw,
                                         scale)
                if lo > 0 or hi < out_w:
                    _average_row_ends(x, out, plane, oy, lo, hi, kh, kw, sh, sw, ph, pw,
                                      count_include_pad, divisor_override)
            else:
                _average_row_ends(x, out, plane, oy, 0, 0, kh, kw, sh, sw, ph, pw,
                                  count_include_pad, divisor_override)
    return 0


@njit(**SLOW_PATH)
def _average_row_by_taps(x, out, plane, oy, lo, hi, kh, kw, sh, sw, ph, pw, scale):
    """Row ``oy``'s interior outputs [lo, hi) of ``plane`` (= n * C + c), one pass per tap."""
    n, c = plane // x.shape[1], plane % x.shape[1]
    acc = out[n, c, oy, lo:hi]
    for j in range(acc.shape[0]):
        acc[j] = 0
    y0 = oy * sh - ph
    for r in range(kh):
        src = x[n, c, y0 + r]
        for s in range(kw):
            first = lo * sw - pw + s
            if sw == 1:
                run = src[first:first + acc.shape[0]]
                for j in range(acc.shape[0]):
                    acc[j] += run[j]
            else:
                for j in range(acc.shape[0]):
                    acc[j] += src[first + j * sw]
    for j in range(acc.shape[0]):
        acc[j] *= scale


@njit(**SLOW_PATH)
def _average_row_ends(x, out, plane, oy, lo, hi, kh, kw, sh, sw, ph, pw, count_include_pad,
                      divisor_override):
    """Row ``oy``'s outputs outside [lo, hi), window by window (lo = hi = 0: the whole row)."""
    n, c = plane // x.shape[1], plane % x.shape[1]
    for ox in range(lo):
        out[n, c, oy, ox] = _window_average(x[n, c], oy, ox, kh, kw, sh, sw, ph, pw,
                                            count_include_pad, divisor_override)
    for ox in range(hi, out.shape[3]):
        out[n, c, oy, ox] = _window_average(x[n, c], oy, ox, kh, kw, sh, sw, ph, pw,
                                            count_include_pad, divisor_override)


@njit(inline="always")
def _window_average(plane, oy, ox, kh, kw, sh, sw, ph, pw, count_include_pad,
                    divisor_override):
    """One window's average, as torch divides it (padding counted or not, or the override)."""
    height, width = plane.shape
    y0 = oy * sh - ph
    y1 = min(y0 + kh, height + ph)
    x0 = ox * sw - pw
    x1 = min(x0 + kw, width + pw)
    pool_size = (y1 - y0) * (x1 - x0)  # the window within the padded input
    ya, yb = max(y0, 0), min(y1, height)
    xa, xb = max(x0, 0), min(x1, width)
    if ya >= yb or xa >= xb:
        return 0.0
    total = 0.0  # float64 sums: no drift on large windows
    for y in range(ya, yb):
        for z in range(xa, xb):
            total += plane[y, z]
    if divisor_override != 0:
        factor = divisor_override
    elif count_include_pad:
        factor = pool_size
    else:
        factor = (yb - ya) * (xb - xa)
    return total / factor


@parallel_kernel
def max_unpool2d_kernel(x, indices, out, worker, workers):
    """out.flat-per-plane[indices] = x; returns how many indices fall outside the plane."""
    channels = x.shape[1]
    plane_size = out.shape[2] * out.shape[3]
    invalid = 0
    my_first, my_stop = share(worker, workers, x.shape[0] * channels)
    for plane in range(my_first, my_stop):
        n, c = plane // channels, plane % channels
        flat = out[n, c].reshape(plane_size)  # out is contiguous: a view
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                index = indices[n, c, i, j]
                if 0 <= index < plane_size:
                    flat[index] = x[n, c, i, j]
                else:
                    invalid += 1
    return invalid

