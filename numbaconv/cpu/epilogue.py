"""Activations applied by the convolution kernels to the rows they have just written.

A convolution followed by ReLU, ReLU6, a clamp, SiLU or Hardswish (the layers of ResNet,
MobileNet and EfficientNet) would otherwise read and write its whole output once more;
here each kernel finishes every output row while it is still in the core's L1 cache. The
epilogue travels to the kernels as one small float64 array, ``post`` (see
:mod:`numbaconv.epilogue`): ``post[0]`` the kind (NONE, CLAMP, SILU, HARDSWISH), and for a
clamp ``post[1]``, ``post[2]`` its low and high bounds; None for no epilogue, which the
kernels test in their own bodies so that Numba compiles plain convolutions without any of
this. Semantics as torch's: NaN propagates; silu(-inf) is NaN (-inf * 0). Clamps and
Hardswish are applied in the biased store itself (:func:`biased_row`); SiLU, and the
kernels whose stores are not a biased row, finish whole rows afterwards
(:func:`finish_block`).

The float32 SiLU uses a vectorised exp (the C library's expf is one value at a time):
exp(a) = 2^n * exp(r), n = round(a / ln 2), r = a - n ln 2 (ln 2 in two parts, Cody and
Waite), exp(r) on [-ln2/2, ln2/2] by Cephes' expf polynomial (relative error ~1e-7, an
ulp of float32); 2^n built from its exponent bits, as two factors so that results down to
the subnormals stay right.
"""

import math

import numpy as np
from numba import njit

from ..config import JIT

NONE, CLAMP, SILU, HARDSWISH = 0, 1, 2, 3

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_POLY = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
#: Below -104, exp underflows to zero in float32 (exp(-104) < half the least subnormal).
_EXP_FLOOR = np.float32(-104.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
#: Values per pass of :func:`sigmoid_block` (its scratch stays in L1).
BLOCK = 1024


@njit(**JIT)
def new_scratch(itemsize):
    """(scaled, bits) for :func:`sigmoid_block`: a worker allocates them once (0.13 us)."""
    return np.empty(BLOCK, dtype=np.float32), np.empty((2, BLOCK), dtype=np.int32)


@njit(inline="always")
def sigmoid_block(src, dst, silu, scaled, bits):
    """dst = sigmoid(src) (times src with ``silu``) for float32 rows of up to BLOCK values,
    in two vectorised passes: exp(-|x|) as 2^n * exp(r), then the quotient."""
    p0, p1, p2, p3, p4, p5 = _EXP_POLY
    powers = bits.view(np.float32)
    count = src.shape[0]
    for i in range(count):  # exp(-|x|) = exp(r) * 2^n, in (0, 1]
        a = -abs(src[i])
        a = _EXP_FLOOR if a < _EXP_FLOOR else a  # NaN falls through
        n = np.floor(a * _LOG2E + _HALF)
        n = n if n == n else np.float32(0.0)  # NaN: any n (r stays NaN)
        r = a - n * _LN2_HI - n * _LN2_LO
        p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
        scaled[i] = _ONE + r + r * r * p
        whole = np.int32(n)
        half = whole >> 1
        bits[0, i] = (half + 127) << 23
        bits[1, i] = (whole - half + 127) << 23
    for i in range(count):
        v = src[i]
        e = scaled[i] * powers[0, i] * powers[1, i]
        inverse = _ONE / (_ONE + e)
        s = inverse if v >= 0 else e * inverse  # 1/(1+e^-x) or e^x/(1+e^x)
        dst[i] = v * s if silu else s


@njit(inline="always")
def finish_value(v, kind, low, high):
    """The epilogue of one value (the scalar paths: squeeze-and-excitation outputs)."""
    if kind == CLAMP:
        return _clamped(v, low, high)
    if kind == HARDSWISH:
        t = v + 3
        t = 0 if t < 0 else (6 if t > 6 else t)
        return v * t / 6
    if kind == SILU:
        if v >= 0:
            return v / (1 + math.exp(-v))
        e = math.exp(v)  # (NaN and -inf: NaN, as torch)
        return v * e / (1 + e)
    return v


@njit(inline="always")
def _clamped(v, low, high):
    v = low if v < low else v  # NaN falls through both
    return high if v > high else v


@njit(inline="always")
def _hardswish(v, three, six, zero):
    """v * relu6(v + 3) / 6, the constants in the array's dtype (kept in it: vectorised)."""
    t = v + three
    t = zero if t < zero else (six if t > six else t)
    return v * t / six


@njit(inline="always")
def biased_row(dst, src, bias, post):
    """dst[j] = src[j] + bias, with a CLAMP or HARDSWISH epilogue applied in the same
    store (pure arithmetic, vectorised); a SILU epilogue is left to :func:`finish_silu`.
    ``dst`` may be ``src``."""
    kind = post[0]
    if kind == CLAMP:
        low, high = dst.dtype.type(post[1]), dst.dtype.type(post[2])
        for j in range(dst.shape[0]):
            dst[j] = _clamped(src[j] + bias, low, high)
    elif kind == HARDSWISH:
        three, six, zero = dst.dtype.type(3), dst.dtype.type(6), dst.dtype.type(0)
        for j in range(dst.shape[0]):
            dst[j] = _hardswish(src[j] + bias, three, six, zero)
    else:
        for j in range(dst.shape[0]):
            dst[j] = src[j] + bias


@njit(inline="always")
def finish_silu(matrix, r0, r1, c0, c1, post, scaled, bits):
    """The SILU epilogue, for rows :func:`biased_row` has just stored (see
    :func:`finish_block`)."""
    if post[0] == SILU:
        _finish_block(matrix, r0, r1, c0, c1, post, scaled, bits)


@njit(inline="always")
def finish_block(matrix, r0, r1, c0, c1, post, scaled, bits):
    """Apply the epilogue ``post`` in place to matrix[r, c0:c1] for r in [r0, r1): rows a
    kernel has just written, still in cache (the kernels whose stores are not a biased
    row). All inlined: a call passing a view of the output keeps that view's reference
    count, and those counts, on the output every thread shares, cost more than the
    activation (a SiLU on ResNet's stem output, row by row: 0.66 ms fused against 0.37
    in two passes). The kernels test ``post is None`` in their own bodies, where Numba
    prunes the branch before inlining: plain convolutions neither run nor compile any of
    it.
    """
    if post[0] != NONE:
        _finish_block(matrix, r0, r1, c0, c1, post, scaled, bits)


@njit(inline="always")
def _finish_block(matrix, r0, r1, c0, c1, post, scaled, bits):
    if c0 == 0 and c1 == matrix.shape[1]:  # whole rows of a C-contiguous matrix: one run
        _finish_row(matrix[r0:r1].reshape((r1 - r0) * matrix.shape[1]), post, scaled, bits)
    else:
        for r in range(r0, r1):
            _finish_row(matrix[r, c0:c1], post, scaled, bits)


@njit(inline="always")
def _finish_row(row, post, scaled, bits):
    kind = int(post[0])
    if kind == CLAMP:
        low, high = row.dtype.type(post[1]), row.dtype.type(post[2])
        for j in range(row.shape[0]):
            row[j] = _clamped(row[j], low, high)
    elif kind == HARDSWISH:
        three, six, zero = row.dtype.type(3), row.dtype.type(6), row.dtype.type(0)
        for j in range(row.shape[0]):
            row[j] = _hardswish(row[j], three, six, zero)
    elif row.itemsize == 4:  # SILU, float32: the vectorised exp
        for lo in range(0, row.shape[0], BLOCK):
            part = row[lo:min(row.shape[0], lo + BLOCK)]
            sigmoid_block(part, part, True, scaled, bits)
    else:  # SILU, float64: the C library's exp
        for j in range(row.shape[0]):
            row[j] = finish_value(row[j], SILU, 0.0, 0.0)
