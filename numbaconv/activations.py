"""Activations with PyTorch's semantics, for NumPy arrays.

Element-wise and memory-bound: NumPy's (and SciPy's) ufuncs already run them at memory
speed, so most are thin, validated wrappers rather than Numba kernels; hardsigmoid and
hardswish, three ufunc passes each, are one Numba pass (:mod:`numbaconv.cpu.elementwise`),
and so are float32 sigmoid and silu (SciPy's ``expit`` calls the C library's exp one value
at a time). Every function
returns a new array of the input's float dtype; NaN propagates and inf saturates as in
torch.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
from scipy import special

from . import array_pool, config
from .epilogue import NO_EPILOGUE
from .random import as_generator
from .spec import _is_int, check_float_array
from ._dask_dispatch import on_dask_arrays
from .devices import on_gpu_arrays
from .tracing import differentiable


def _number(op: str, name: str, value) -> float:
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a number, got {value!r}")
    return float(value)


def _fresh(x):
    """A new array of x's shape and dtype for a ufunc's ``out=``: a ufunc called on a 0-d
    array returns a NumPy scalar, where torch returns a 0-d tensor; with ``out=`` it
    returns the (0-d) array. Large ones reuse pooled memory (:mod:`numbaconv.array_pool`)."""
    return array_pool.empty(x.shape, x.dtype)


#: Values from which relu and its gradient run as one Numba pass on the threads
#: (``cpu.elementwise``); fewer by NumPy, whose call costs less than a launch.
RELU_KERNEL_MIN_VALUES = 1 << 14


@differentiable
@on_dask_arrays
@on_gpu_arrays
def relu(input):
    """max(x, 0); NaN stays NaN. ``relu(np.array([-1.0, 2.0]))`` -> ``[0., 2.]``."""
    x = check_float_array("relu", "input", input)
    if x.size < RELU_KERNEL_MIN_VALUES:
        return np.maximum(x, x.dtype.type(0), out=_fresh(x))
    from .cpu.elementwise import relu_flat

    out = _fresh(x)
    with config.one_share_for(x.size * config.WORK_PER_VALUE_READ):
        relu_flat(np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
    return out


def relu_backward(ans, grad):
    """The input gradient of relu: 0 where relu's output ``ans`` is at most zero, else
    ``grad`` (torch's threshold_backward: a NaN output passes it on), in its dtype."""
    grad = np.asarray(grad)
    ans = np.asarray(ans)
    if ans.size < RELU_KERNEL_MIN_VALUES or grad.shape != ans.shape or \
            grad.dtype not in (np.float32, np.float64):
        return np.where(ans <= 0, grad.dtype.type(0), grad)
    from .cpu.elementwise import relu_backward_flat

    out = np.empty(grad.shape, grad.dtype)
    with config.one_share_for(ans.size * config.WORK_PER_VALUE_READ):
        relu_backward_flat(np.ascontiguousarray(ans).reshape(-1),
                           np.ascontiguousarray(grad).reshape(-1), out.reshape(-1))
    return out


@differentiable
@on_dask_arrays
@on_gpu_arrays
def sigmoid(input):
    """1 / (1 + exp(-x)), without overflow warnings for large |x|."""
    x = check_float_array("sigmoid", "input", input)
    return _sigmoid_or_silu(x, False)


def _sigmoid_or_silu(x, silu: bool):
    """sigmoid(x), or x * sigmoid(x): float32 in one vectorised Numba pass
    (:func:`numbaconv.cpu.elementwise.sigmoid_or_silu`, 5x SciPy's scalar ``expit`` on
    8M values, within 3e-7 relative of it), float64 with SciPy's ``expit``."""
    out = _fresh(x)
    if x.dtype == np.float32 and x.size:
        from .cpu.elementwise import sigmoid_or_silu

        with config.one_share_for(x.size * config.WORK_PER_VALUE_READ):
            sigmoid_or_silu(np.ascontiguousarray(x).reshape(-1), silu, out.reshape(-1))
        return out
    special.expit(x, out=out)
    if silu:
        with np.errstate(invalid="ignore"):  # -inf * 0 is NaN, as in torch
            np.multiply(out, x, out=out)
    return out


@differentiable
@on_dask_arrays
@on_gpu_arrays
def tanh(input):
    """The hyperbolic tangent, element-wise."""
    x = check_float_array("tanh", "input", input)
    return np.tanh(x, out=_fresh(x))


def _leaky(x, slope):
    return np.where(x > 0, x, x * slope).astype(x.dtype, copy=False)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def leaky_relu(input, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    x = check_float_array("leaky_relu", "input", input)
    return _leaky(x, x.dtype.type(_number("leaky_relu", "negative_slope", negative_slope)))


def prelu_channels(input_shape: tuple, weight_shape: tuple) -> int:
    """The input's channels (axis 1, or 1), checked against prelu's slopes."""
    if len(weight_shape) > 1:
        raise ValueError(f"prelu: expected weight to be a scalar or 1-D array, got shape "
                         f"{tuple(weight_shape)}")
    channels = input_shape[1] if len(input_shape) >= 2 else 1
    size = math.prod(weight_shape)
    if size not in (1, channels):
        raise ValueError(f"prelu: weight has {size} slopes; expected 1 or one per channel "
                         f"({channels}, input axis 1)")
    return channels


def rrelu_bounds(lower, upper) -> tuple:
    lower, upper = _number("rrelu", "lower", lower), _number("rrelu", "upper", upper)
    if lower > upper:
        raise ValueError(f"rrelu: lower bound should be less than or equal to the upper bound, "
                         f"got lower={lower}, upper={upper}")
    return lower, upper


@differentiable
@on_gpu_arrays
def prelu(input, weight):
    """leaky_relu with learnt slopes: ``weight`` holds 1 slope, or one per channel (axis 1
    of an input with 2 or more dimensions)."""
    x = check_float_array("prelu", "input", input)
    w = check_float_array("prelu", "weight", weight)
    channels = prelu_channels(x.shape, w.shape)
    dtype = np.result_type(x, w)
    slope = w.reshape(()) if w.size == 1 else w.reshape((1, channels) + (1,) * (x.ndim - 2))
    return np.where(x > 0, x, x * slope).astype(dtype, copy=False)


@differentiable
@on_gpu_arrays
def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, rng=None):
    """Randomised leaky ReLU. Evaluation (``training=False``) uses the mean slope
    (lower + upper) / 2; training draws a slope per element, uniform in [lower, upper],
    from ``rng`` (a ``numpy.random.Generator`` or an int seed; None: numbaconv's default
    generator, which ``numbaconv.manual_seed`` seeds)."""
    x = check_float_array("rrelu", "input", input)
    lower, upper = rrelu_bounds(lower, upper)
    if not training:
        return _leaky(x, x.dtype.type((lower + upper) / 2))
    slopes = as_generator(rng).uniform(lower, upper, size=x.shape).astype(x.dtype)
    return _leaky(x, slopes)


def _in_place(op: str, input, result, inplace):
    """``result``, or with ``inplace`` (torch's option) ``input`` overwritten by it."""
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"{op}: inplace must be a bool, got {inplace!r}")
    if not inplace:
        return result
    if not (isinstance(input, np.ndarray) and input.flags.writeable):
        raise ValueError(f"{op}: inplace=True needs a writeable NumPy array as input, got "
                         f"{type(input).__name__}")
    input[...] = result
    return input


@differentiable
@on_dask_arrays
@on_gpu_arrays
def relu6(input, inplace=False):
    """min(max(x, 0), 6), as ``torch.nn.functional.relu6`` (MobileNet's activation).

    >>> import numpy as np, numbaconv
    >>> numbaconv.relu6(np.array([-1.0, 3.0, 7.0]))
    array([0., 3., 6.])
    """
    x = check_float_array("relu6", "input", input)
    return _in_place("relu6", input, np.clip(x, 0, 6, out=_fresh(x)), inplace)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clipped to [min_val, max_val], as ``torch.nn.functional.hardtanh``."""
    x = check_float_array("hardtanh", "input", input)
    low, high = _number("hardtanh", "min_val", min_val), _number("hardtanh", "max_val", max_val)
    if low > high:
        raise ValueError("hardtanh: min_val cannot be greater than max_val")
    return _in_place("hardtanh", input, np.clip(x, low, high, out=_fresh(x)), inplace)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def hardsigmoid(input, inplace=False):
    """relu6(x + 3) / 6, as ``torch.nn.functional.hardsigmoid`` (0 below -3, 1 above 3)."""
    x = check_float_array("hardsigmoid", "input", input)
    return _in_place("hardsigmoid", input, _hard_sigmoid_or_swish(x, False), inplace)


@differentiable
@on_dask_arrays
@on_gpu_arrays
def hardswish(input, inplace=False):
    """x * relu6(x + 3) / 6, as ``torch.nn.functional.hardswish`` (MobileNetV3).

    >>> import numpy as np, numbaconv
    >>> numbaconv.hardswish(np.array([-4.0, 0.0, 1.0, 4.0]))
    array([-0.        ,  0.        ,  0.66666667,  4.        ])
    """
    x = check_float_array("hardswish", "input", input)
    return _in_place("hardswish", input, _hard_sigmoid_or_swish(x, True), inplace)


def _hard_sigmoid_or_swish(x, swish: bool):
    from .cpu.elementwise import hard_sigmoid_or_swish

    out = _fresh(x)
    if x.size:
        with config.one_share_for(x.size * config.WORK_PER_VALUE_READ):
            hard_sigmoid_or_swish(np.ascontiguousarray(x).reshape(-1), swish, out.reshape(-1))
    return out


@differentiable
@on_dask_arrays
@on_gpu_arrays
def silu(input, inplace=False):
    """x * sigmoid(x), as ``torch.nn.functional.silu`` (swish; EfficientNet)."""
    x = check_float_array("silu", "input", input)
    return _in_place("silu", input, _sigmoid_or_silu(x, True), inplace)


_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


@differentiable
@on_dask_arrays
@on_gpu_arrays
def gelu(input, approximate="none"):
    """Gaussian error linear unit, as ``torch.nn.functional.gelu``: x * Phi(x) with Phi the
    standard normal CDF, 0.5 * x * (1 + erf(x / sqrt(2))); ``approximate='tanh'``: 0.5 * x
    * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).

    Computed as x * erfc(-x / sqrt(2)) / 2 with SciPy's erfc, accurate to rounding in the
    negative tail too; torch's float32 path is off there by up to 6e-7 (absolute), and
    gives NaN at +inf, where this gives +inf.

    >>> import numpy as np, numbaconv
    >>> numbaconv.gelu(np.array([-1.0, 0.0, 1.0]))
    array([-0.15865525,  0.        ,  0.84134475])
    """
    x = check_float_array("gelu", "input", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate argument must be either none or tanh, got "
                         f"{approximate!r}")
    out = _fresh(x)
    with np.errstate(invalid="ignore", over="ignore"):  # -inf gives NaN, as in torch
        _gelu_into(x, approximate, out)
    return out


def _gelu_into(x, approximate, out):
    if approximate == "none":
        # Phi(x) = erfc(-x / sqrt(2)) / 2: 1 + erf(x / sqrt(2)) cancels for x << 0.
        np.multiply(x, x.dtype.type(-1 / np.sqrt(2.0)), out=out)
        special.erfc(out, out=out)
    else:
        np.multiply(x, x, out=out)
        np.multiply(out, x.dtype.type(0.044715), out=out)
        np.add(out, x.dtype.type(1), out=out)
        np.multiply(out, x, out=out)
        np.multiply(out, x.dtype.type(_SQRT_2_OVER_PI), out=out)
        np.tanh(out, out=out)
        np.add(out, x.dtype.type(1), out=out)
    np.multiply(out, x, out=out)
    np.multiply(out, x.dtype.type(0.5), out=out)


def _softmax_dim(op: str, x, dim, stacklevel: int = 4) -> int:
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the "
                      f"call to include dim=X as an argument.", stacklevel=stacklevel)
        return 0 if x.ndim in (0, 1, 3) else 1
    if not _is_int(dim):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    rank = max(x.ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(f"{op}: Dimension out of range (expected to be in range of "
                         f"[{-rank}, {rank - 1}], but got {dim})")
    return dim % rank


def _softmax_input(op, input, dtype):
    x = check_float_array(op, "input", input)
    if dtype is not None:
        target = np.dtype(dtype)
        if target.kind != "f":
            raise TypeError(f"{op}: dtype must be a float dtype, got {target}")
        x = x.astype(target)
    return x


@differentiable
@on_gpu_arrays
def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim``, as ``torch.nn.functional.softmax`` (computed
    as exp(x - max), so large inputs do not overflow; ``dtype`` casts the input first).
    Without ``dim``, torch's deprecated implicit choice (with its warning).

    >>> import numpy as np, numbaconv
    >>> numbaconv.softmax(np.log(np.array([[1.0, 3.0], [2.0, 2.0]])), dim=1)
    array([[0.25, 0.75],
           [0.5 , 0.5 ]])
    """
    x = _softmax_input("softmax", input, dtype)
    axis = _softmax_dim("softmax", x, dim, _stacklevel + 1)
    if x.ndim == 0:
        return np.ones_like(x) if np.isfinite(x) else x - x
    return special.softmax(x, axis=axis).astype(x.dtype, copy=False)


@differentiable
@on_gpu_arrays
def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """x - log(sum(exp(x))) along ``dim``, as ``torch.nn.functional.log_softmax``
    (computed stably; arguments as :func:`softmax`)."""
    x = _softmax_input("log_softmax", input, dtype)
    axis = _softmax_dim("log_softmax", x, dim, _stacklevel + 1)
    if x.ndim == 0:
        return x - x
    return special.log_softmax(x, axis=axis).astype(x.dtype, copy=False)


#: Input rows (the product of the leading axes) from which ``linear`` runs numbaconv's own
#: register-tiled matrix product on Numba's threads instead of BLAS. BLAS's worker
#: threads spin after each call and slow the next layers (a ResNet-18 forward pass at
#: batch 1: 44 ms with them, 20 ms without; torch 25). Measured on the networks.json
#: linear layers (2 threads, AVX-512, time / torch's, geomean): at batch 8 the own
#: product 0.92, BLAS on one thread 1.7. Fewer rows (a classifier's head up to batch 8)
#: run as dot products on Numba's threads (``gemm.vector_products``), bound by reading
#: the weights once: the register tiles would compute a whole vector of columns (16 with
#: AVX-512) for each of them. Measured (AVX-512, 2 threads), 8 rows by 512 -> 1000: dot
#: products 75 us, own product 138, torch 47; 1280 -> 1000: 215, 323, torch 197; at 16
#: rows the own product won on two of three shapes.
OWN_PRODUCT_MIN_ROWS = 9
#: Rows below which ``_own_product`` packs the rows and streams the weights in place.
OWN_PRODUCT_PACKED_ROWS = 64


def _own_product(rows, w):
    """rows (M, C) @ w.T (C, K) -> (M, K), M >= OWN_PRODUCT_MIN_ROWS, both read in place:
    the rows of both run along C, and the product (``cpu.weight_grad.weight_products``,
    by ``matmul_bt``) transposes blocks of its second operand as it packs them, so
    nothing is transposed in memory but a small result (a 3072 x 768 weight transposed on
    every call cost 4x the product of 49 rows by it). The second operand is copied into
    panels by every job: the weights, except for fewer than OWN_PRODUCT_PACKED_ROWS rows,
    which are then packed instead while the weights stream through once, the result
    transposed. Measured (AVX2, 2 threads, ms, torch in brackets): 16 rows by 4096 ->
    4096 6.8 so, 10.8 packing the weights (12.4-13.4); 32 by 512 -> 1000 0.37, 0.59
    (0.53-0.59); 392 by 768 -> 3072 (ConvNeXt's MLP) 15.3, 13.6 (13.9-15.8)."""
    import numba

    from .cpu.layout import transposed
    from .cpu.weight_grad import weight_products
    from .registry import product_blocks

    m, k = rows.shape[0], w.shape[0]
    by_weights = m < OWN_PRODUCT_PACKED_ROWS  # out.T (K, M) = w (K, C) @ rows.T
    first, second = (w, rows) if by_weights else (rows, w)
    out = np.empty((1, first.shape[0], second.shape[0]), rows.dtype)
    block_rows, block_cols = product_blocks(out.shape[1], out.shape[2], 1,
                                            numba.get_num_threads(), rows.itemsize)
    with config.one_share_for(m * rows.shape[1] * k):
        weight_products(_row_major(first)[None], _row_major(second)[None], out, block_rows,
                        block_cols, False,
                        workers=-(-out.shape[1] // block_rows) * -(-out.shape[2] // block_cols))
        return transposed(out[0]) if by_weights else out[0]


def matrix_product(a, b):
    """a (M, K) @ b (K, N) for 2-D float arrays of one dtype, on Numba's threads by the
    register-tiled product, b read in place (a linear layer's input gradient, g @ W, and,
    with a transposed, its weight gradient)."""
    import numba

    from .cpu.gemm import pointwise_conv2d, product_jobs

    m, n = a.shape[0], b.shape[1]
    out = np.empty((1, m, n), a.dtype)
    if out.size == 0:
        return out[0]
    if a.shape[1] == 0:
        return np.zeros((m, n), a.dtype)
    blocks = product_jobs(m, n, 1, a.itemsize, numba.get_num_threads())
    # (as pointwise_conv2d sees it: one "image", b, whose rows are its channels; the
    # rows of a are its weights' rows, with no bias)
    with config.one_share_for(m * a.shape[1] * n):
        pointwise_conv2d(_row_major(b)[None], _row_major(a), np.zeros(m, a.dtype), out, 1,
                         *blocks, NO_EPILOGUE)
    return out[0]


def _dot_products(rows, w, bias=None):
    """rows (M, C) @ w.T (+ bias (K,)) -> (M, K), M < OWN_PRODUCT_MIN_ROWS: one dot
    product per output, vectorised along C, outputs shared among Numba's threads (bound
    by reading the weights once; faster than BLAS on one thread: 4096 -> 4096 in 2.3 ms
    against 2.8, 512 -> 1000 in 17 us against 95)."""
    from .cpu.gemm import vector_products

    out = np.empty((rows.shape[0], w.shape[0]), rows.dtype)
    bias = np.zeros(w.shape[0], rows.dtype) if bias is None else _row_major(bias)
    with config.one_share_for(rows.shape[0] * w.size):
        vector_products(_row_major(rows), _row_major(w), bias, out, NO_EPILOGUE)
    return out


def _row_major(a):
    """``a`` C-contiguous with the strides of a fresh array: NumPy calls an array with a
    length-1 axis contiguous whatever that axis's stride, and the matrix product reads
    the row stride."""
    a = np.ascontiguousarray(a)
    strides, step = [], a.itemsize
    for size in reversed(a.shape):
        strides.append(step)
        step *= size
    return a if a.strides == tuple(reversed(strides)) else a.copy()


@differentiable
@on_dask_arrays
@on_gpu_arrays
def linear(input, weight, bias=None):
    """y = x W^T + b, as ``torch.nn.functional.linear``.

    input (*, in_features); weight (out_features, in_features), or (in_features,) for a
    dot product over the last axis; bias broadcastable to the output, usually
    (out_features,). Returns (*, out_features). Computed on Numba's threads: from
    OWN_PRODUCT_MIN_ROWS input rows by numbaconv's own matrix product, fewer as one dot
    product per output; what remains (a 1-D weight) by NumPy's BLAS on the calling
    thread (``config.single_threaded_blas``).

    >>> import numpy as np, numbaconv
    >>> numbaconv.linear(np.ones((2, 3)), np.ones((4, 3)), np.arange(4.0))
    array([[3., 4., 5., 6.],
           [3., 4., 5., 6.]])
    """
    x = check_float_array("linear", "input", input)
    w = check_float_array("linear", "weight", weight)
    b = None if bias is None else check_float_array("linear", "bias", bias)
    if x.ndim == 0 or w.ndim == 0:
        raise ValueError(f"linear: input and weight must be at least 1-D, got shapes {x.shape} "
                         f"and {w.shape}")
    if w.ndim > 2:
        raise ValueError(f"linear: weight must be (out_features, in_features) or "
                         f"(in_features,), got shape {w.shape}")
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(f"linear: input's last axis ({x.shape[-1]}) must equal weight's "
                         f"in_features ({w.shape[-1]}); shapes {x.shape} and {w.shape}")
    if b is not None and w.ndim == 1 and (b.ndim >= 1 or x.ndim == 2):
        # torch's rule: with a 1-D weight, only a 0-d bias, and not for a 2-D input
        raise ValueError(f"linear: a 1-D weight takes a bias only if it is a scalar (0-d) and "
                         f"the input is not 2-D; got input {x.shape}, bias {b.shape}")
    dtype = np.result_type(*[a for a in (x, w, b) if a is not None])
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    rows = math.prod(x.shape[:-1])
    if w.ndim == 2 and rows >= OWN_PRODUCT_MIN_ROWS and w.shape[0] > 0:
        # One (rows x in) @ (in x out) product for any leading axes (ConvNeXt's MLPs on
        # (N, H, W, C)), on Numba's threads with numbaconv's own matrix product.
        out = _own_product(x.reshape(rows, x.shape[-1]), w).reshape(
            x.shape[:-1] + (w.shape[0],))
    elif w.ndim == 2 and rows > 0 and w.size > 0:
        fused = b is not None and b.shape == (w.shape[0],)  # added by the kernel
        out = _dot_products(x.reshape(rows, x.shape[-1]), w,
                            b.astype(dtype) if fused else None)
        out = out.reshape(x.shape[:-1] + (w.shape[0],))
        if fused:
            return out
    else:
        with config.single_threaded_blas():  # (OpenBLAS's spinning threads: see there)
            out = np.matmul(x, w.T)
    if b is not None:
        if np.broadcast_shapes(out.shape, b.shape) != out.shape:
            raise ValueError(f"linear: bias of shape {b.shape} does not broadcast to the output "
                             f"shape {out.shape}")
        out = out + b.astype(dtype, copy=False)
    return np.asarray(out, dtype=dtype)
