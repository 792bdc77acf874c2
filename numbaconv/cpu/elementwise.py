"""Element-wise kernels that NumPy would run as several passes over memory."""

import numpy as np

from .dispatch import parallel_kernel

#: Values per job: enough to amortise a job's start, few enough to share among threads.
CHUNK = 1 << 15


@parallel_kernel
def hard_sigmoid_or_swish(x, swish, out, worker, workers):
    """out = relu6(x + 3) / 6 (hardsigmoid), times x with ``swish`` (hardswish), over the
    flat arrays x and out, in chunks of CHUNK values. NaN propagates, as in torch."""
    size = x.shape[0]
    three, six = x.dtype.type(3), x.dtype.type(6)
    zero = x.dtype.type(0)
    for chunk in range(worker, -(-size // CHUNK), workers):
        lo = chunk * CHUNK
        src = x[lo:min(size, lo + CHUNK)]
        dst = out[lo:min(size, lo + CHUNK)]
        if swish:
            for i in range(src.shape[0]):
                v = src[i]
                t = v + three
                t = zero if t < zero else (six if t > six else t)  # NaN falls through
                dst[i] = v * t / six
        else:
            for i in range(src.shape[0]):
                t = src[i] + three
                t = zero if t < zero else (six if t > six else t)
                dst[i] = t / six
    return 0


# --------------------------------------------------------------------------- sigmoid, silu
# A float32 exp(-|x|) that LLVM vectorises (the C library's expf, which NumPy, SciPy and a
# plain Numba loop call, is one value at a time): exp(a) = 2^n * exp(r), n = round(a /
# ln 2), r = a - n ln 2 (ln 2 in two parts, Cody and Waite), exp(r) on [-ln2/2, ln2/2] by
# Cephes' expf polynomial (relative error ~1e-7, an ulp of float32); 2^n built from its
# exponent bits, as two factors so that results down to the subnormals stay right.

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_POLY = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
#: Below -104, exp underflows to zero in float32 (exp(-104) < half the least subnormal).
_EXP_FLOOR = np.float32(-104.0)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
#: Values per block of the two passes (their scratch stays in L1).
_BLOCK = 1024


@parallel_kernel
def sigmoid_or_silu(x, silu, out, worker, workers):
    """out = 1 / (1 + exp(-x)) (sigmoid), times x with ``silu``, over the flat float32
    arrays x and out, in chunks of CHUNK values. As torch: NaN propagates, sigmoid(+-inf)
    is 1 and 0, silu(-inf) is NaN (-inf * 0), subnormal results for x down to -104."""
    size = x.shape[0]
    p0, p1, p2, p3, p4, p5 = _EXP_POLY
    scaled = np.empty(_BLOCK, dtype=np.float32)
    bits = np.empty((2, _BLOCK), dtype=np.int32)
    powers = bits.view(np.float32)
    for chunk in range(worker, -(-size // CHUNK), workers):
        end = min(size, (chunk + 1) * CHUNK)
        for lo in range(chunk * CHUNK, end, _BLOCK):
            src = x[lo:min(end, lo + _BLOCK)]
            dst = out[lo:min(end, lo + _BLOCK)]
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
    return 0
