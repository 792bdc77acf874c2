"""numbaconv's layers on arrays in GPU memory: the functions the public ones hand a device
array to.

A public function marked :func:`numbaconv.devices.on_gpu_arrays` sends a call whose input
is a device array (a Numba device array, a CuPy array, a torch CUDA tensor: anything with
``__cuda_array_interface__``) to the function of the same name here, with the same
arguments. Each checks them with the CPU path's own rules (:mod:`numbaconv.pool_spec`,
:func:`numbaconv.spec.conv_transpose_spec`, the activations' and normalisation's checks),
requires every array of the call on the GPU, checks that the result and scratch fit in
the device's free memory (:func:`numbaconv.cuda.memory.check`), launches the kernels of
:mod:`numbaconv.cuda` on the default stream and returns a Numba device array without
waiting for it. Inputs are never modified (but with ``inplace=True``), and are used in
place when C-contiguous and of the computation's dtype (else copied on the device).

Results are Numba device arrays that also add (:mod:`numbaconv.cuda.arrays`: ``a + b``
and ``a += b`` of two of one shape, a residual connection); ``cupy.asarray(out)`` or
``torch.as_tensor(out, device="cuda")`` wrap one without a copy.
"""

from __future__ import annotations

import math

import numpy as np

from . import devices
from .activations import _number, _softmax_dim
from .pool_spec import divisor, pool_spec, unpool_spec
from .spec import check_float_dtype, conv_transpose_spec


# --------------------------------------------------------------------------- plumbing

def _cuda():
    from .cuda.runtime import require_gpu

    return require_gpu()


def _shape_dtype(op: str, name: str, array) -> tuple:
    shape, dtype = devices.shape_and_dtype(array)
    check_float_dtype(op, name, dtype)
    return shape, dtype


def _on_gpu(op: str, **arrays) -> None:
    """Every given array on the GPU (torch's rule: one device per call)."""
    where = devices.placement(op, None, arrays)
    if where != "cuda":
        raise ValueError(f"{op}: expected the arrays on the GPU")


def _contiguous(array, dtype, shape):
    _cuda()  # (CudaUnavailable, saying what is missing, before numba.cuda is used)
    from .cuda import layout

    return layout.to_device(array, np.dtype(dtype).name, tuple(int(s) for s in shape), 0)


def _empty(op: str, shape, dtype, scratch_bytes: int = 0):
    """A device array for the result, after checking it (and ``scratch_bytes``) fits."""
    from .cuda import memory
    from .cuda.arrays import as_result

    cuda = _cuda()
    shape = tuple(int(s) for s in shape)
    memory.check(op, math.prod(shape) * np.dtype(dtype).itemsize + scratch_bytes)
    return as_result(cuda.device_array(shape, dtype=np.dtype(dtype)))


def _zeros(op: str, shape, dtype):
    """A zero-filled result (memory checked as by :func:`_empty`)."""
    from .cuda.pool import _fill_source

    out = _empty(op, shape, dtype)
    _launch(_fill_source, dtype, out.size, _flat(out), np.dtype(dtype).type(0))
    return out


def _launch(source, dtype, count: int, *args) -> None:
    from .cuda.runtime import grid_1d, kernel

    if count:
        blocks, threads = grid_1d(count)
        kernel(source, np.dtype(dtype).name)[blocks, threads](*args)


def _flat(array):
    return array.reshape(math.prod(array.shape))


# --------------------------------------------------------------------------- activations

def _activation(op: str, input, name: str, a=0.0, b=0.0, inplace=False):
    from .cuda.elementwise import UNARY

    shape, dtype = _shape_dtype(op, "input", input)
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"{op}: inplace must be a bool, got {inplace!r}")
    if inplace and not _is_contiguous_device(input):
        raise ValueError(f"{op}: inplace=True needs a C-contiguous device array (the result "
                         f"is written over it)")
    x = _contiguous(input, dtype, shape)  # (in place: the input's own memory)
    out = x if inplace else _empty(op, shape, dtype)
    _launch(UNARY[name], dtype, math.prod(shape), _flat(x), _flat(out),
            dtype.type(a), dtype.type(b))
    return input if inplace else out


def relu(input):
    return _activation("relu", input, "relu")


def relu6(input, inplace=False):
    return _activation("relu6", input, "relu6", inplace=inplace)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    low, high = _number("hardtanh", "min_val", min_val), _number("hardtanh", "max_val", max_val)
    if low > high:
        raise ValueError("hardtanh: min_val cannot be greater than max_val")
    return _activation("hardtanh", input, "hardtanh", low, high, inplace)


def leaky_relu(input, negative_slope=0.01):
    slope = _number("leaky_relu", "negative_slope", negative_slope)
    return _activation("leaky_relu", input, "leaky_relu", slope)


def sigmoid(input):
    return _activation("sigmoid", input, "sigmoid")


def tanh(input):
    return _activation("tanh", input, "tanh")


def silu(input, inplace=False):
    return _activation("silu", input, "silu", inplace=inplace)


def hardsigmoid(input, inplace=False):
    return _activation("hardsigmoid", input, "hardsigmoid", inplace=inplace)


def hardswish(input, inplace=False):
    return _activation("hardswish", input, "hardswish", inplace=inplace)


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate argument must be either none or tanh, got "
                         f"{approximate!r}")
    return _activation("gelu", input, "gelu" if approximate == "none" else "gelu_tanh")


def prelu(input, weight):
    from .activations import prelu_channels
    from .cuda.elementwise import _prelu_source

    op = "prelu"
    _on_gpu(op, input=input, weight=weight)
    shape, x_dtype = _shape_dtype(op, "input", input)
    w_shape, w_dtype = _shape_dtype(op, "weight", weight)
    prelu_channels(shape, w_shape)  # (1 slope, or one per channel)
    dtype = np.result_type(x_dtype, w_dtype)
    slopes = math.prod(w_shape)
    out = _empty(op, shape, dtype)
    _launch(_prelu_source, dtype, out.size, _flat(_contiguous(input, dtype, shape)),
            _contiguous(weight, dtype, (slopes,)), slopes,
            math.prod(shape[2:]) if slopes > 1 else 1, _flat(out))
    return out


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, rng=None):
    from .activations import rrelu_bounds

    lower, upper = rrelu_bounds(lower, upper)
    if training:
        raise NotImplementedError("rrelu in training mode (random slopes) runs on the CPU only "
                                  "so far; on the GPU it runs in evaluation mode")
    return _activation("rrelu", input, "leaky_relu", (lower + upper) / 2)


def add(a, b, out=None):
    """a + b for two device arrays of one shape (a residual connection): a new array, or
    written into ``out`` (``a += b``: out=a, a contiguous array of the result's dtype)."""
    from .cuda.elementwise import _add_source

    _on_gpu("add", a=a, b=b)
    shape, dtype = _shape_dtype("add", "a", a)
    other_shape, other_dtype = _shape_dtype("add", "b", b)
    if other_shape != shape:
        raise ValueError(f"add: the arrays must have the same shape, got {shape} and "
                         f"{other_shape}")
    dtype = np.result_type(dtype, other_dtype)
    if out is None:
        out = _empty("add", shape, dtype)
    elif out.dtype != dtype or not out.is_c_contiguous():
        raise TypeError(f"add: out must be a C-contiguous {dtype} device array, got "
                        f"{out.dtype}")
    _launch(_add_source, dtype, math.prod(shape), _flat(_contiguous(a, dtype, shape)),
            _flat(_contiguous(b, dtype, shape)), _flat(out))
    return out


# --------------------------------------------------------------------------- dropout

def _dropout(op, input, p, training, inplace):
    from .dropout import _probability

    _probability(op, p)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: training must be a bool, got {training!r}")
    if training and p != 0.0:
        raise NotImplementedError(f"{op} in training mode runs on the CPU only so far; on the "
                                  f"GPU it runs in evaluation mode (training=False)")
    _shape_dtype(op, "input", input)
    return input  # the identity (torch returns its input too)


def dropout(input, p=0.5, training=True, inplace=False, *, rng=None):
    return _dropout("dropout", input, p, training, inplace)


def dropout2d(input, p=0.5, training=True, inplace=False, *, rng=None):
    return _dropout("dropout2d", input, p, training, inplace)


# --------------------------------------------------------------------------- softmax

def _softmax(op: str, input, dim, dtype, stacklevel, log: bool):
    from .cuda.norm import SOFTMAX

    shape, in_dtype = _shape_dtype(op, "input", input)
    if dtype is not None:
        target = np.dtype(dtype)
        if target.kind != "f":
            raise TypeError(f"{op}: dtype must be a float dtype, got {target}")
        check_float_dtype(op, "dtype", target)
        in_dtype = target
    axis = _softmax_dim(op, _Shape(shape), dim, stacklevel + 2)
    shape3 = (math.prod(shape[:axis]), shape[axis] if shape else 1,
              math.prod(shape[axis + 1:]))
    x = _contiguous(input, in_dtype, shape3)
    out = _empty(op, shape3, in_dtype)
    _launch(SOFTMAX[log], in_dtype, shape3[0] * shape3[2], x, out)
    return out.reshape(*shape) if shape else out.reshape(())


class _Shape:
    """What the CPU path's shape checks read of an array: ``ndim`` and ``shape``."""

    def __init__(self, shape):
        self.shape, self.ndim = tuple(shape), len(shape)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    return _softmax("softmax", input, dim, dtype, _stacklevel, False)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    return _softmax("log_softmax", input, dim, dtype, _stacklevel, True)


# --------------------------------------------------------------------------- linear

def linear(input, weight, bias=None):
    from .cuda.elementwise import _bias_columns_source
    from .cuda.gemm import launch_matmul

    op = "linear"
    _on_gpu(op, input=input, weight=weight, bias=bias)
    x_shape, x_dtype = _shape_dtype(op, "input", input)
    w_shape, w_dtype = _shape_dtype(op, "weight", weight)
    dtypes = [x_dtype, w_dtype]
    if bias is not None:
        b_shape, b_dtype = _shape_dtype(op, "bias", bias)
        dtypes.append(b_dtype)
    if len(x_shape) == 0 or len(w_shape) != 2:
        raise ValueError(f"{op}: on the GPU, input must be at least 1-D and weight "
                         f"(out_features, in_features), got shapes {x_shape} and {w_shape}")
    if x_shape[-1] != w_shape[1]:
        raise ValueError(f"{op}: input's last axis ({x_shape[-1]}) must equal weight's "
                         f"in_features ({w_shape[1]}); shapes {x_shape} and {w_shape}")
    if bias is not None and b_shape != (w_shape[0],):
        raise ValueError(f"{op}: on the GPU, bias must be (out_features,) = ({w_shape[0]},), "
                         f"got shape {b_shape}")
    dtype = np.result_type(*dtypes)
    rows = math.prod(x_shape[:-1])
    x = _contiguous(input, dtype, (1, rows, x_shape[-1]))
    w = _contiguous(weight, dtype, (1,) + tuple(w_shape))
    out = _empty(op, (1, rows, w_shape[0]), dtype)
    if rows and w_shape[0]:
        launch_matmul(x, w, out, dtype.name, 0, b_transposed=True)
        if bias is not None:
            _launch(_bias_columns_source, dtype, rows * w_shape[0], _flat(out),
                    _contiguous(bias, dtype, (w_shape[0],)))
    return out.reshape(*(tuple(x_shape[:-1]) + (w_shape[0],)))


# --------------------------------------------------------------------------- pooling

def _pool_input(op: str, input, spec, dtype):
    return _contiguous(input, dtype, (spec.batch, spec.channels, spec.in_height, spec.in_width))


def _max_pool(op, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    from .cuda.pool import _max_pool_source

    shape, dtype = _shape_dtype(op, "input", input)
    spec = pool_spec(op, shape, kernel_size, stride, padding, dilation, ceil_mode)
    out_shape = (spec.batch, spec.channels, spec.out_height, spec.out_width)
    out = _empty(op, out_shape, dtype, math.prod(out_shape) * 8 if return_indices else 0)
    indices = _cuda().device_array(out_shape if return_indices else (1, 1, 1, 1), np.int64)
    _launch(_max_pool_source, dtype, math.prod(out_shape), _pool_input(op, input, spec, dtype),
            out, indices, *spec.kernel, *spec.stride, *spec.padding, *spec.dilation,
            bool(return_indices))
    if return_indices:
        return out.reshape(*spec.output_shape), indices.reshape(*spec.output_shape)
    return out.reshape(*spec.output_shape)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return _max_pool("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    return _max_pool("max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def _avg_pool(op, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    from .cuda.pool import _avg_pool_source

    shape, dtype = _shape_dtype(op, "input", input)
    spec = pool_spec(op, shape, kernel_size, stride, padding, 1, ceil_mode)
    override = divisor(op, divisor_override)
    out_shape = (spec.batch, spec.channels, spec.out_height, spec.out_width)
    out = _empty(op, out_shape, dtype)
    _launch(_avg_pool_source, dtype, math.prod(out_shape), _pool_input(op, input, spec, dtype),
            out, *spec.kernel, *spec.stride, *spec.padding, bool(count_include_pad),
            0 if override is None else int(override))
    return out.reshape(*spec.output_shape)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    return _avg_pool("avg_pool2d", input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    return _avg_pool("avg_pool1d", input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    from .cuda.pool import _unpool_source

    op = "max_unpool2d"
    _on_gpu(op, input=input, indices=indices)
    shape, dtype = _shape_dtype(op, "input", input)
    index_shape, index_dtype = devices.shape_and_dtype(indices)
    if index_dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer array (int64, as max_pool2d returns "
                        f"them), got dtype {index_dtype}")
    spec = unpool_spec(op, shape, index_shape, kernel_size, stride, padding, output_size)
    plane = (spec.batch, spec.channels)
    out = _zeros(op, plane + (spec.out_height, spec.out_width), dtype)
    x = _contiguous(input, dtype, plane + tuple(shape[-2:]))
    index = _contiguous(indices, np.int64, plane + tuple(index_shape[-2:]))
    invalid = _cuda().to_device(np.zeros(1, np.int64))
    _launch(_unpool_source, dtype, math.prod(shape), x, index, out, invalid)
    bad = int(invalid.copy_to_host()[0])  # (the one wait: torch raises here too)
    if bad:
        raise ValueError(f"{op}: found {bad} invalid max indices (each must be in "
                         f"[0, {spec.out_height * spec.out_width}) for an output plane of "
                         f"{spec.out_height}x{spec.out_width})")
    head = plane if spec.batched else (spec.channels,)
    return out.reshape(*(head + (spec.out_height, spec.out_width)))


def _adaptive_pool(op, input, output_size, dims, take_max, return_indices=False):
    from .cuda.pool import _adaptive_source
    from .pooling import _adaptive_output_size

    shape, dtype = _shape_dtype(op, "input", input)
    if len(shape) not in (dims + 1, dims + 2):
        raise ValueError(f"{op}: expected a {dims + 1}-D or {dims + 2}-D input ((C, *) or "
                         f"(N, C, *) with {dims} pooled axes), got shape {shape}")
    if 0 in shape[-dims - 1:]:
        raise ValueError(f"{op}: expected input to have non-zero size for non-batch "
                         f"dimensions, got shape {shape}")
    size = _adaptive_output_size(op, output_size, shape[-dims:])
    in4 = (math.prod(shape[:-dims - 1]), shape[-dims - 1]) + (1,) * (2 - dims) + shape[-dims:]
    out4 = in4[:2] + (1,) * (2 - dims) + size
    out = _empty(op, out4, dtype, math.prod(out4) * 8 if take_max else 0)
    indices = _cuda().device_array(out4 if take_max else (1, 1, 1, 1), np.int64)
    _launch(_adaptive_source, dtype, math.prod(out4), _contiguous(input, dtype, in4), out,
            indices, bool(take_max))
    result_shape = tuple(shape[:-dims]) + size
    if return_indices:
        return out.reshape(*result_shape), indices.reshape(*result_shape)
    return out.reshape(*result_shape)


def adaptive_avg_pool2d(input, output_size):
    return _adaptive_pool("adaptive_avg_pool2d", input, output_size, 2, False)


def adaptive_avg_pool1d(input, output_size):
    return _adaptive_pool("adaptive_avg_pool1d", input, output_size, 1, False)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    if not isinstance(return_indices, (bool, np.bool_)):
        raise TypeError(f"adaptive_max_pool2d: return_indices must be a bool, got "
                        f"{return_indices!r}")
    return _adaptive_pool("adaptive_max_pool2d", input, output_size, 2, True, return_indices)


# --------------------------------------------------------------------------- normalisation

def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-05):
    from .cuda.norm import NORMALIZE, REDUCE_THREADS, _affine_source
    from .normalization import _number as number

    op = "batch_norm"
    _on_gpu(op, input=input, running_mean=running_mean, running_var=running_var,
            weight=weight, bias=bias)
    shape, dtype = _shape_dtype(op, "input", input)
    if len(shape) < 2:
        raise ValueError(f"{op}: expected input with at least 2 dimensions (N, C, *), got "
                         f"shape {shape}")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: training must be a bool, got {training!r}")
    momentum, eps = number(op, "momentum", momentum), number(op, "eps", eps)
    channels = shape[1]
    given = {}
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is None:
            if name.startswith("running") and not training:
                raise ValueError(f"{op}: {name} must be given in evaluation mode "
                                 f"(training=False)")
            continue
        value_shape, value_dtype = _shape_dtype(op, name, value)
        if value_shape != (channels,):
            raise ValueError(f"{op}: {name} should contain {channels} elements (one per "
                             f"channel of the input's axis 1), got shape {value_shape}")
        given[name] = (value, value_dtype)
    dtype = np.result_type(dtype, *(given[n][1] for n in ("weight", "bias") if n in given))
    shape3 = (shape[0], channels, math.prod(shape[2:]))
    x = _contiguous(input, dtype, shape3)
    params = {name: _contiguous(value, dtype, (channels,)) for name, (value, _) in given.items()
              if name in ("weight", "bias")}
    out = _empty(op, shape3, dtype)
    unused = _cuda().device_array(1, dtype)
    weight_d, bias_d = params.get("weight", unused), params.get("bias", unused)
    if training:
        count = shape3[0] * shape3[2]
        if count <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                             f"got input of shape {shape}")
        stats = []
        for name in ("running_mean", "running_var"):
            if name in given:
                value, value_dtype = given[name]
                if value_dtype != dtype or not _is_contiguous_device(value):
                    raise TypeError(f"{op}: {name} must be a C-contiguous {dtype} device "
                                    f"array when training (it is updated in place)")
                stats.append(_cuda().as_cuda_array(value) if hasattr(
                    value, "__cuda_array_interface__") else value)
        track = len(stats) == 2
        if len(stats) == 1:
            raise ValueError(f"{op}: give both running_mean and running_var, or neither")
        if channels and count:
            running = stats if track else [unused, unused]
            from .cuda.runtime import kernel

            kernel(NORMALIZE["per_line"], dtype.name)[channels, REDUCE_THREADS](
                x, running[0], running[1], weight_d, bias_d, dtype.type(eps),
                dtype.type(momentum), "weight" in params, "bias" in params, track, 1, 1, out)
        return out.reshape(*shape)
    mean = _contiguous(given["running_mean"][0], dtype, (channels,))
    var = _contiguous(given["running_var"][0], dtype, (channels,))
    _launch(_affine_source, dtype, math.prod(shape), _flat(x), mean, var, weight_d, bias_d,
            dtype.type(eps), "weight" in params, "bias" in params, channels, shape3[2],
            _flat(out))
    return out.reshape(*shape)


def _normalize_lines(op, input, mode, lines_shape, affine, affine_shape, eps, groups=1,
                     positions=1):
    """layer_norm / group_norm: ``input`` viewed as (1, lines, inner), each line normalised
    by one block; ``affine`` {name: array or None} of ``affine_shape``."""
    from .cuda.norm import NORMALIZE, REDUCE_THREADS
    from .cuda.runtime import kernel
    from .normalization import _number as number

    _on_gpu(op, input=input, **affine)
    shape, dtype = _shape_dtype(op, "input", input)
    eps = number(op, "eps", eps)
    size = math.prod(affine_shape)
    params = {}
    for name, value in affine.items():
        if value is None:
            continue
        value_shape, value_dtype = _shape_dtype(op, name, value)
        if value_shape != tuple(affine_shape):
            raise ValueError(f"{op}: {name} must have shape {tuple(affine_shape)}, got "
                             f"{value_shape}")
        dtype = np.result_type(dtype, value_dtype)
        params[name] = value
    params = {name: _contiguous(value, dtype, (size,)) for name, value in params.items()}
    out = _empty(op, (1,) + tuple(lines_shape), dtype)
    unused = _cuda().device_array(1, dtype)
    if out.size:
        kernel(NORMALIZE[mode], dtype.name)[lines_shape[0], REDUCE_THREADS](
            _contiguous(input, dtype, (1,) + tuple(lines_shape)), unused, unused,
            params.get("weight", unused), params.get("bias", unused), dtype.type(eps),
            dtype.type(0), "weight" in params, "bias" in params, False, groups, positions,
            out)
    return out.reshape(*shape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-05):
    from .normalization import layer_norm_shape

    shape = _shape_dtype("layer_norm", "input", input)[0]
    normalized = layer_norm_shape("layer_norm", shape, normalized_shape)
    size = math.prod(normalized)
    return _normalize_lines("layer_norm", input, "per_position",
                            (math.prod(shape) // size if size else 0, size),
                            {"weight": weight, "bias": bias}, normalized, eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-05):
    from .normalization import check_group_norm

    shape = _shape_dtype("group_norm", "input", input)[0]
    check_group_norm("group_norm", shape, num_groups)
    positions = math.prod(shape[2:])
    return _normalize_lines("group_norm", input, "per_group_channel",
                            (shape[0] * num_groups, shape[1] // num_groups * positions),
                            {"weight": weight, "bias": bias}, (shape[1],), eps,
                            num_groups, positions)


def _is_contiguous_device(array) -> bool:
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is None:  # a simulator array
        return array.is_c_contiguous()
    return interface.get("strides") is None


# --------------------------------------------------------------------------- transposed

def _conv_transpose(op, input, weight, bias, stride, padding, output_padding, groups,
                    dilation, algorithm):
    from .cuda import transposed

    if algorithm != "auto":
        raise ValueError(f"{op}: on the GPU algorithm must be 'auto' (one kernel: output "
                         f"stride phases), got algorithm={algorithm!r}")
    _on_gpu(op, input=input, weight=weight, bias=bias)
    x_shape, x_dtype = _shape_dtype(op, "input", input)
    w_shape, w_dtype = _shape_dtype(op, "weight", weight)
    dtypes = [x_dtype, w_dtype]
    b_shape = None
    if bias is not None:
        b_shape, b_dtype = _shape_dtype(op, "bias", bias)
        dtypes.append(b_dtype)
    dtype = np.result_type(*dtypes)
    tspec = conv_transpose_spec(op, x_shape, w_shape, b_shape, stride, padding,
                                output_padding, groups, dilation, dtype)
    x = _contiguous(input, dtype, (tspec.batch, tspec.in_channels, tspec.in_height,
                                   tspec.in_width))
    w = _contiguous(weight, dtype, (tspec.in_channels, tspec.out_channels // tspec.groups,
                                    tspec.kernel_height, tspec.kernel_width))
    b = None if bias is None else _contiguous(bias, dtype, (tspec.out_channels,))
    out = _empty(op, (tspec.batch, tspec.out_channels, tspec.out_height, tspec.out_width),
                 dtype)
    if out.size:
        transposed.run(tspec, x, w, b, out, 0)
    return out.reshape(*tspec.output_shape)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    return _conv_transpose("conv_transpose2d", input, weight, bias, stride, padding,
                           output_padding, groups, dilation, algorithm)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algorithm="auto"):
    return _conv_transpose("conv_transpose1d", input, weight, bias, stride, padding,
                           output_padding, groups, dilation, algorithm)


__all__ = [name for name in dir() if not name.startswith("_") and name not in (
    "annotations", "devices", "divisor", "math", "np", "pool_spec", "unpool_spec",
    "check_float_dtype", "conv_transpose_spec")]


# --------------------------------------------------------------------------- pad

def pad(input, pad, mode="constant", value=None):
    """``numbaconv.pad`` on a device array: where each output value comes from is worked
    out on the host by the CPU function itself, applied to the flat positions of the
    padded axes (so every mode, crop and error is the CPU's), then one gather kernel."""
    import numbers

    from .cuda.layout import _pad_gather_source
    from .padding import PAD_MODES, _amounts, check_mode_dims
    from .padding import pad as pad_on_host

    op = "pad"
    shape, dtype = _shape_dtype(op, "input", input)
    axes = len(_amounts(op, pad, len(shape)))
    if mode in PAD_MODES and mode != "constant":
        check_mode_dims(op, len(shape), axes, mode)
    if mode == "constant" and value is not None and (
            not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_))):
        raise TypeError(f"{op}: value must be a number, got {value!r}")
    sizes = tuple(shape[len(shape) - axes:])
    positions = np.arange(math.prod(sizes), dtype=np.float64).reshape((1, 1) + sizes)
    sources = pad_on_host(positions, pad, mode, np.nan if mode == "constant" else value)
    out_sizes = sources.shape[2:]
    sources = np.where(np.isnan(sources), -1, sources).astype(np.int64).reshape(-1)
    outer = math.prod(shape[:len(shape) - axes])
    out = _empty(op, (outer, sources.size), dtype)
    fill = dtype.type(0.0 if value is None or mode != "constant" else value)
    _launch(_pad_gather_source, dtype, out.size,
            _contiguous(input, dtype, (outer, math.prod(sizes))), _cuda().to_device(sources),
            fill, out)
    return out.reshape(*(tuple(shape[:len(shape) - axes]) + tuple(out_sizes)))


# --------------------------------------------------------------------------- gradients

def _gradient_spec(op, input_size, weight_size, grad_output, stride, padding, dilation,
                   groups, padding_mode, dtypes):
    from .nn.grad import _grad_spec

    if padding_mode != "zeros":
        raise NotImplementedError(f"{op}: on the GPU padding_mode must be 'zeros' so far, got "
                                  f"{padding_mode!r}; copy the arrays to the host for it")
    return _grad_spec(op, input_size, weight_size, _Shape(devices.shape_and_dtype(
        grad_output)[0]), stride, padding, dilation, groups, padding_mode,
        np.result_type(*dtypes))


def conv_input_grad(op, input_size, weight, grad_output, stride, padding, dilation, groups,
                    padding_mode):
    """``nn.grad.conv1d_input/conv2d_input`` on device arrays: the transposed convolution
    of the output gradient, with the output padding that gives back ``input_size``."""
    from .nn.grad import _size

    _on_gpu(op, weight=weight, grad_output=grad_output)
    input_size = _size(op, "input_size", input_size)
    w_shape, w_dtype = _shape_dtype(op, "weight", weight)
    g_shape, g_dtype = _shape_dtype(op, "grad_output", grad_output)
    spec = _gradient_spec(op, input_size, w_shape, grad_output, stride, padding, dilation,
                          groups, padding_mode, (w_dtype, g_dtype))
    if spec.batch == 0 or spec.in_channels == 0:
        return _zeros(op, input_size, spec.dtype)
    g = _contiguous(grad_output, spec.dtype, (spec.batch, spec.out_channels, spec.out_height,
                                              spec.out_width))
    w = _contiguous(weight, spec.dtype, (spec.out_channels, spec.in_channels_per_group,
                                         spec.kernel_height, spec.kernel_width))
    reach_h = (spec.out_height - 1) * spec.stride_h + spec.dilation_h * (spec.kernel_height - 1) + 1
    reach_w = (spec.out_width - 1) * spec.stride_w + spec.dilation_w * (spec.kernel_width - 1) + 1
    extra = (spec.padded_height - reach_h, spec.padded_width - reach_w)
    stride2, dilation2 = (spec.stride_h, spec.stride_w), (spec.dilation_h, spec.dilation_w)
    if spec.pad_top == spec.pad_bottom and spec.pad_left == spec.pad_right:
        out = _conv_transpose(op, g, w, None, stride2, (spec.pad_top, spec.pad_left), extra,
                              spec.groups, dilation2, "auto")
    else:  # ('same' with an even kernel) the padded input's gradient, cropped
        padded = _conv_transpose(op, g, w, None, stride2, 0, extra, spec.groups, dilation2,
                                 "auto")
        crop = padded[:, :, spec.pad_top:spec.pad_top + spec.in_height,
                      spec.pad_left:spec.pad_left + spec.in_width]
        out = _empty(op, crop.shape, spec.dtype)
        _launch(_gather(4), spec.dtype, out.size, crop, _flat(out))
    return out.reshape(*input_size)


def conv_weight_grad(op, input, weight_size, grad_output, stride, padding, dilation, groups,
                     padding_mode):
    """``nn.grad.conv1d_weight/conv2d_weight`` on device arrays
    (:mod:`numbaconv.cuda.weight_grad`)."""
    from .cuda import weight_grad
    from .nn.grad import _size

    _on_gpu(op, input=input, grad_output=grad_output)
    weight_size = _size(op, "weight_size", weight_size)
    x_shape, x_dtype = _shape_dtype(op, "input", input)
    g_shape, g_dtype = _shape_dtype(op, "grad_output", grad_output)
    spec = _gradient_spec(op, x_shape, weight_size, grad_output, stride, padding, dilation,
                          groups, padding_mode, (x_dtype, g_dtype))
    w4 = (spec.out_channels, spec.in_channels_per_group, spec.kernel_height, spec.kernel_width)
    if spec.batch == 0 or spec.out_height * spec.out_width == 0:
        return _zeros(op, w4, spec.dtype).reshape(*weight_size)
    out = _empty(op, w4, spec.dtype)
    x = _contiguous(input, spec.dtype, (spec.batch, spec.in_channels, spec.in_height,
                                        spec.in_width))
    g = _contiguous(grad_output, spec.dtype, (spec.batch, spec.out_channels, spec.out_height,
                                              spec.out_width))
    weight_grad.run(spec, x, g, out)
    return out.reshape(*weight_size)


def _gather(ndim):
    from .cuda.layout import GATHER

    return GATHER[ndim]


# --------------------------------------------------------------------------- interpolate

def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    from .cuda.interpolate import RESIZE
    from .interpolation import resize_sources

    op = "interpolate"
    shape, dtype = _shape_dtype(op, "input", input)
    axes = resize_sources(op, shape, dtype, size, scale_factor, mode, align_corners,
                          recompute_scale_factor, antialias)
    linear = axes[0][2] is not None
    result_shape = tuple(shape[:2]) + tuple(len(low) for low, _, _ in axes)
    if len(axes) == 1:  # (N, C, L) as planes of height 1
        axes = [(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, dtype))] + axes
    cuda = _cuda()
    tables = []
    for low, high, weight in axes:
        tables += [cuda.to_device(low), cuda.to_device(low if high is None else high),
                   cuda.to_device(np.zeros(len(low), dtype) if weight is None
                                  else weight.astype(dtype))]
    out_shape = tuple(shape[:2]) + tuple(len(low) for low, _, _ in axes)
    out = _empty(op, out_shape, dtype)
    x = _contiguous(input, dtype, tuple(shape[:2]) + (1,) * (4 - len(shape)) + tuple(shape[2:]))
    _launch(RESIZE[linear], dtype, math.prod(out_shape), x, out, *tables)
    return out.reshape(*result_shape)
