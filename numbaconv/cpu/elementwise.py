"""Element-wise kernels that NumPy would run as several passes over memory."""

from .dispatch import parallel_kernel, share
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
    my_first, my_stop = share(worker, workers, -(-size // CHUNK))
    for chunk in range(my_first, my_stop):
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


@parallel_kernel
def scale_planes(x, scale, out, worker, workers):
    """out[n, c] = x[n, c] * scale[n, c] (x, out (N, C, H, W) C-contiguous; scale (N, C)):
    a squeeze-and-excitation block's rescaling of its input, one (n, c) plane per job,
    where NumPy's broadcast multiply is one thread."""
    n_batch, channels = x.shape[0], x.shape[1]
    size = x.shape[2] * x.shape[3]
    first, stop = share(worker, workers, n_batch * channels)
    for plane in range(first, stop):
        n, c = plane // channels, plane % channels
        src, dst = x[n, c].reshape(size), out[n, c].reshape(size)
        factor = scale[n, c]
        for i in range(size):
            dst[i] = src[i] * factor
    return 0


@parallel_kernel
def relu_flat(x, out, worker, workers):
    """out = x where x is not below zero, else 0, over the flat arrays x and out, in
    chunks of CHUNK values: torch's rule (NaN and -0.0 stay as they are). NumPy's
    ``maximum`` took 280 us for LeNet's 64 x 6 x 28 x 28 (AVX2), one thread, this ~40."""
    size = x.shape[0]
    zero = x.dtype.type(0)
    my_first, my_stop = share(worker, workers, -(-size // CHUNK))
    for chunk in range(my_first, my_stop):
        lo = chunk * CHUNK
        src = x[lo:min(size, lo + CHUNK)]
        dst = out[lo:min(size, lo + CHUNK)]
        for i in range(src.shape[0]):
            v = src[i]
            dst[i] = zero if v < zero else v
    return 0


@parallel_kernel
def relu_backward_flat(ans, grad, out, worker, workers):
    """out = 0 where relu's output ``ans`` is at most zero, else grad (torch's
    threshold_backward: a NaN output passes its gradient on, a NaN or infinite gradient
    where the unit was off gives 0), over flat arrays, in chunks of CHUNK values."""
    size = ans.shape[0]
    zero = out.dtype.type(0)
    my_first, my_stop = share(worker, workers, -(-size // CHUNK))
    for chunk in range(my_first, my_stop):
        lo = chunk * CHUNK
        a = ans[lo:min(size, lo + CHUNK)]
        g = grad[lo:min(size, lo + CHUNK)]
        dst = out[lo:min(size, lo + CHUNK)]
        for i in range(a.shape[0]):
            dst[i] = zero if a[i] <= zero else g[i]
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
    my_first, my_stop = share(worker, workers, -(-size // CHUNK))
    for chunk in range(my_first, my_stop):
        end = min(size, (chunk + 1) * CHUNK)
        for lo in range(chunk * CHUNK, end, BLOCK):
            sigmoid_block(x[lo:min(end, lo + BLOCK)], out[lo:min(end, lo + BLOCK)], silu,
                          scaled, bits)
    return 0
