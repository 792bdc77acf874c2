"""Element-wise kernels that NumPy would run as several passes over memory."""

from .dispatch import parallel_kernel
from .epilogue import BLOCK, new_scratch, sigmoid_block

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


@parallel_kernel
def sigmoid_or_silu(x, silu, out, worker, workers):
    """out = 1 / (1 + exp(-x)) (sigmoid), times x with ``silu``, over the flat float32
    arrays x and out, in chunks of CHUNK values, with the vectorised exp of
    :func:`numbaconv.cpu.epilogue.sigmoid_block`. As torch: NaN propagates, sigmoid(+-inf)
    is 1 and 0, silu(-inf) is NaN (-inf * 0); subnormal results for x down to -104."""
    size = x.shape[0]
    scaled, bits = new_scratch(x.itemsize)
    for chunk in range(worker, -(-size // CHUNK), workers):
        end = min(size, (chunk + 1) * CHUNK)
        for lo in range(chunk * CHUNK, end, BLOCK):
            sigmoid_block(x[lo:min(end, lo + BLOCK)], out[lo:min(end, lo + BLOCK)], silu,
                          scaled, bits)
    return 0
