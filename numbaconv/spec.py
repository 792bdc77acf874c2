"""Argument normalisation and validation for convolutions (pure Python, no Numba).

Every rule of PyTorch's argument checking for ``conv1d``/``conv2d`` (and for
``torch.nn.Conv1d``/``Conv2d``'s ``padding_mode``) lives here, once. The result is a
frozen :class:`ConvSpec` of plain ints that the planner and the kernels consume; the
kernels never see strings, tuples of options or unvalidated values.

Errors name the function, the parameter, the value received and what is allowed:
``ValueError`` for a bad value or shape, ``TypeError`` for a bad type.
"""

from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from . import devices
from ._dask_dispatch import is_dask_array
from .tracing import is_traced

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("valid", "same")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class ConvSpec:
    """A fully resolved convolution: the one contract between user and kernels.

    The 2-D geometry always: conv1d is stored as a conv2d with a height of 1.
    ``pad_*`` is the padding still to be applied; ``padding_mode`` says how.
    Derived sizes are computed once per spec (``cached_property``): every call reads
    them several times, and a repeated call reuses its spec.
    """

    op: str  # public function name, for messages ("conv2d", "conv1d")
    batch: int
    in_channels: int
    in_height: int
    in_width: int
    out_channels: int
    kernel_height: int
    kernel_width: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    groups: int
    padding_mode: str
    has_bias: bool
    dtype: str
    batched: bool

    @cached_property
    def padded_height(self) -> int:
        return self.in_height + self.pad_top + self.pad_bottom

    @cached_property
    def padded_width(self) -> int:
        return self.in_width + self.pad_left + self.pad_right

    @cached_property
    def out_height(self) -> int:
        return output_size(self.padded_height, self.kernel_height, self.stride_h, self.dilation_h)

    @cached_property
    def out_width(self) -> int:
        return output_size(self.padded_width, self.kernel_width, self.stride_w, self.dilation_w)

    @property
    def in_channels_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_channels_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def result_channels(self) -> int:
        """Channels of the returned array: torch returns none when the input has none."""
        return 0 if self.in_channels == 0 else self.out_channels

    @cached_property
    def output_shape(self) -> tuple:
        """Shape of the array returned to the user (unbatched and conv1d dims squeezed)."""
        spatial = (self.out_width,) if self.op.endswith("1d") else (self.out_height, self.out_width)
        head = (self.batch, self.result_channels) if self.batched else (self.result_channels,)
        return head + spatial

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    @cached_property
    def is_unpadded_1x1(self) -> bool:
        """A 1x1 kernel and no padding (any stride): each output reads one input pixel."""
        return (self.kernel_height == self.kernel_width == 1
                and not (self.pad_top or self.pad_bottom or self.pad_left or self.pad_right))

    @cached_property
    def is_pointwise(self) -> bool:
        """An unpadded 1x1 convolution of stride 1: each image already is the (C, H*W)
        matrix to multiply (``gemm.pointwise_conv2d``, no input copy)."""
        return self.is_unpadded_1x1 and self.stride_h == self.stride_w == 1

    @cached_property
    def is_vector_product(self) -> bool:
        """A 1x1, unpadded, ungrouped convolution of 1x1 images (squeeze-and-excitation
        layers; any stride): N dot products per output channel (``gemm.vector_products``)."""
        return (self.is_unpadded_1x1 and self.in_height == self.in_width == 1
                and self.groups == 1 and self.in_channels > 0)

    @cached_property
    def flops(self) -> int:
        """Multiply-adds x 2 of the direct definition (the figure GFLOP/s is quoted against)."""
        return (
            2 * self.batch * self.result_channels * self.out_height * self.out_width
            * self.in_channels_per_group * self.kernel_height * self.kernel_width
        )

    @cached_property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def with_padding_applied(self) -> "ConvSpec":
        """The spec seen after an explicit (non-zero mode) padding has been materialised."""
        return replace(
            self,
            in_height=self.padded_height,
            in_width=self.padded_width,
            pad_top=0, pad_bottom=0, pad_left=0, pad_right=0,
            padding_mode="zeros",
        )

    def key(self) -> tuple:
        """A hashable description of the computation (for caches), batch included."""
        return (
            self.batch, self.in_channels, self.in_height, self.in_width, self.out_channels,
            self.kernel_height, self.kernel_width, self.stride_h, self.stride_w,
            self.dilation_h, self.dilation_w, self.pad_top, self.pad_bottom, self.pad_left,
            self.pad_right, self.groups, self.padding_mode, self.has_bias, self.dtype,
        )


def output_size(padded: int, kernel: int, stride: int, dilation: int) -> int:
    """floor((padded - dilation * (kernel - 1) - 1) / stride + 1), PyTorch's formula."""
    return (padded - dilation * (kernel - 1) - 1) // stride + 1


# --------------------------------------------------------------------------- helpers


def _is_int(value) -> bool:
    # bool is an int subclass but torch rejects it, and so do we.
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _int_tuple(op: str, name: str, value, ndim: int) -> tuple:
    """An int or a length-1/ndim sequence of ints -> a tuple of ``ndim`` Python ints."""
    if _is_int(value):
        return (operator.index(value),) * ndim
    if isinstance(value, (tuple, list)):
        if not all(_is_int(v) for v in value):
            raise TypeError(
                f"{op}: {name} must be an int or a tuple of {ndim} ints, got {value!r}"
            )
        if len(value) == 1:
            return (operator.index(value[0]),) * ndim
        if len(value) == ndim:
            return tuple(operator.index(v) for v in value)
        raise ValueError(
            f"{op}: expected {name} to be a single integer value or a list of {ndim} values "
            f"to match the convolution dimensions, but got {name}={list(value)!r}"
        )
    raise TypeError(f"{op}: {name} must be an int or a tuple of {ndim} ints, got {value!r} "
                    f"of type {type(value).__name__}")


def exact_argument(value) -> bool:
    """True for an int, a str or a tuple of ints: arguments whose equality means the same
    meaning (True == 1 and 1.0 == 1, but both must still reach validation), so that a
    repeated call's checked spec can be reused by them."""
    kind = type(value)
    if kind is int or kind is str:
        return True
    if kind is not tuple:
        return False
    for item in value:  # a loop, not all(...): half the time, on every call
        if type(item) is not int:
            return False
    return True


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))  # NumPy's own dtype objects


def check_float_dtype(op: str, name: str, dtype) -> None:
    if dtype is _FLOAT_DTYPES[0] or dtype is _FLOAT_DTYPES[1]:
        return  # the common case, without dtype.name (a few microseconds per call)
    dtype = np.dtype(dtype)
    if dtype.kind != "f" or dtype.name not in DTYPES:
        raise TypeError(
            f"{op}: {name} must be a float32 or float64 array, got dtype {dtype}; "
            f"convert it first, e.g. {name}.astype(np.float32)"
        )


def check_float_array(op: str, name: str, value) -> np.ndarray:
    """``value`` as a float32/float64 ndarray on the host (array-likes accepted, never copied
    needlessly); a clear error for anything else, GPU arrays included (CPU-only callers)."""
    if value is None:
        raise TypeError(f"{op}: {name} must be a float32 or float64 array, got None")
    if type(value) is not np.ndarray:
        _refuse_traced(op, name, value)
        if is_dask_array(value):  # never computed whole behind the user's back
            raise TypeError(
                f"{op}: {name} is a Dask array, which {op} does not take (numbaconv's "
                f"Dask arrays: the input of convolutions, pooling, activations, eval "
                f"batch_norm, linear and nn.Sequential; weights are NumPy arrays); "
                f"compute it first ({name}.compute()) or map {op} over its blocks")
    if devices.is_device_array(value):
        if name != "input":  # the input is on the host (else the call went to the GPU)
            raise ValueError(
                f"{op}: expected all arrays on the same device, but {name} is on the GPU "
                f"and input is on the host; move them with numba.cuda.to_device(array) or "
                f"back with device_array.copy_to_host()")
        raise NotImplementedError(
            f"{op} runs on the CPU only so far, but {name} is a GPU array "
            f"({type(value).__name__}); copy it to the host first "
            f"(device_array.copy_to_host(), cupy.asnumpy(a) or tensor.cpu().numpy())")
    try:
        array = np.asarray(value)
    except ValueError as error:  # a ragged nested sequence
        raise ValueError(f"{op}: {name} must be a rectangular array of numbers, got a "
                         f"{type(value).__name__} NumPy cannot make one of ({error})") from None
    if array.dtype == object and not isinstance(value, np.ndarray):  # not array-like at all
        raise TypeError(f"{op}: {name} must be a float32 or float64 array, got "
                        f"{type(value).__name__} {_short_repr(value)}")
    check_float_dtype(op, name, array.dtype)
    return array


def _refuse_traced(op: str, name: str, value) -> None:
    """A gradient must never be silently wrong: an autograd box (a gradient being traced)
    reaching a function without a gradient, or NumPy's object arrays of boxes (a NumPy
    function applied to traced arrays), stop the trace with the reason."""
    if is_traced(value):
        raise NotImplementedError(
            f"{op}: numbaconv has no gradient for {op} with respect to {name}, so "
            f"value_and_grad cannot trace through it")
    if isinstance(value, (list, tuple)) and any(is_traced(v) for v in value) or \
            getattr(value, "dtype", None) == object and any(is_traced(v) for v in
                                                             np.ravel(value)[:1]):
        raise TypeError(
            f"{op}: {name} holds traced arrays turned into a NumPy object array: a NumPy "
            f"function was applied to values a gradient is traced through; use "
            f"autograd.numpy instead (import autograd.numpy as anp; anp.concatenate(...))")


def _short_repr(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_float_operands(op: str, input, weight, bias) -> tuple:
    """(x, w, b, dtype): the arrays checked as float arrays, and their promoted dtype."""
    x = check_float_array(op, "input", input)
    w = check_float_array(op, "weight", weight)
    b = None if bias is None else check_float_array(op, "bias", bias)
    return x, w, b, np.result_type(*[a for a in (x, w, b) if a is not None])


def resolve_padding(op: str, padding, kernel: tuple, dilation: tuple, stride: tuple) -> tuple:
    """padding (int, tuple, 'same', 'valid') -> ((before, after) per spatial dim)."""
    ndim = len(kernel)
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(
                f"{op}: invalid padding string {padding!r}; padding must be one of "
                f"{PADDING_STRINGS}, an int or a tuple of {ndim} ints"
            )
        if padding == "valid":
            return ((0, 0),) * ndim
        if any(s != 1 for s in stride):
            raise ValueError(
                f"{op}: padding='same' is not supported for strided convolutions, "
                f"got stride={stride}"
            )
        pads = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            # Like torch: the odd extra goes to the end (bottom/right).
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    values = _int_tuple(op, "padding", padding, ndim)
    if any(p < 0 for p in values):
        raise ValueError(f"{op}: negative padding is not supported, got padding={padding!r}")
    return tuple((p, p) for p in values)


# --------------------------------------------------------------------------- the spec


def conv_options(op: str, nsp: int, stride, dilation, groups, padding_mode) -> tuple:
    """(stride, dilation, groups) checked and normalised; the rules that need no shapes, so
    ``numbaconv.nn.Conv2d`` applies them when it is built."""
    if not _is_int(groups):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    groups = operator.index(groups)
    if groups <= 0:
        raise ValueError(f"{op}: groups must be a positive integer, got groups={groups}")
    stride = _int_tuple(op, "stride", stride, nsp)
    dilation = _int_tuple(op, "dilation", dilation, nsp)
    if any(s <= 0 for s in stride):
        raise ValueError(f"{op}: non-positive stride is not supported, got stride={stride}")
    if any(d <= 0 for d in dilation):
        raise ValueError(f"{op}: non-positive dilation is not supported, got dilation={dilation}")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(
            f"{op}: padding_mode must be one of {PADDING_MODES}, got padding_mode={padding_mode!r}"
        )
    return stride, dilation, groups


# Repeated validation. A training step validates each layer's arguments three times
# more than its forward call (its input gradient's transposed convolution and the
# convolution that computes it, its weight gradient), each a few hundred lines of
# Python: 0.2-0.3 ms of a small layer's 0.3 ms input gradient (AVX2). Specs depend on
# nothing but the arguments, so those of exact arguments (ints, strs, tuples of ints,
# whose equality means the same meaning: see exact_argument) are kept by them; a
# refused call raises before anything is kept, so it raises again every time.
_SPECS: dict = {}
_SPECS_MAX = 512


def _remembered(make, op, *arguments):
    """make(op, *arguments), kept in ``_SPECS`` when every argument is exact (None, an
    exact_argument, or a dtype) and computed anew otherwise."""
    for value in arguments:
        if not (value is None or exact_argument(value) or isinstance(value, np.dtype)
                or value is np.float32 or value is np.float64):
            return make(op, *arguments)
    key = (make, op) + arguments
    spec = _SPECS.get(key)
    if spec is None:
        spec = make(op, *arguments)
        if len(_SPECS) >= _SPECS_MAX:
            _SPECS.clear()
        _SPECS[key] = spec
    return spec


def conv_spec(op: str, input_shape, weight_shape, bias_shape, stride, padding, dilation,
              groups, padding_mode, dtype) -> ConvSpec:
    """Validate PyTorch conv arguments and return the canonical :class:`ConvSpec`.

    ``op`` is ``"conv1d"`` or ``"conv2d"``; shapes are tuples (``bias_shape`` None for no
    bias); ``dtype`` is the computation dtype (already promoted).
    """
    return _remembered(_conv_spec, op, _shape_key(input_shape), _shape_key(weight_shape),
                       _shape_key(bias_shape), stride, padding, dilation, groups,
                       padding_mode, dtype)


def _shape_key(shape):
    """A shape as a tuple, for ``_remembered`` (a list becomes one; anything else, kept
    as it is, is checked there)."""
    return tuple(shape) if type(shape) is list else shape


def _conv_spec(op: str, input_shape, weight_shape, bias_shape, stride, padding, dilation,
               groups, padding_mode, dtype) -> ConvSpec:
    nsp = 1 if op.endswith("1d") else 2
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)

    if len(input_shape) not in (nsp + 1, nsp + 2):
        raise ValueError(
            f"{op}: expected {nsp + 1}D (unbatched) or {nsp + 2}D (batched) input, "
            f"but got input of shape {input_shape}"
        )
    if len(weight_shape) != nsp + 2:
        raise ValueError(
            f"{op}: expected a {nsp + 2}D weight (out_channels, in_channels/groups, "
            f"{'kL' if nsp == 1 else 'kH, kW'}), but got weight of shape {weight_shape}"
        )
    stride, dilation, groups = conv_options(op, nsp, stride, dilation, groups, padding_mode)

    batched = len(input_shape) == nsp + 2
    full_shape = input_shape if batched else (1,) + input_shape
    batch, in_channels, *spatial = full_shape
    out_channels, weight_in_channels, *kernel = weight_shape

    if out_channels < groups or out_channels % groups:
        raise ValueError(
            f"{op}: out_channels (weight.shape[0]={out_channels}) must be a positive multiple "
            f"of groups={groups}, got weight of shape {weight_shape}"
        )
    if in_channels != weight_in_channels * groups:
        raise ValueError(
            f"{op}: given groups={groups} and weight of shape {weight_shape}, expected input of "
            f"shape {input_shape} to have {weight_in_channels * groups} channels, "
            f"but got {in_channels} channels"
        )
    if any(k <= 0 for k in kernel):
        raise ValueError(f"{op}: kernel size must be positive, got weight of shape {weight_shape}")
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise ValueError(
            f"{op}: expected bias to be 1-dimensional with {out_channels} elements "
            f"(weight.shape[0]), but got bias of shape {tuple(bias_shape)}"
        )
    if any(s == 0 for s in spatial):
        raise ValueError(
            f"{op}: only zero batch or zero channel inputs are supported, "
            f"but got input of shape {input_shape}"
        )

    pads = resolve_padding(op, padding, tuple(kernel), dilation, stride)

    if padding_mode != "zeros":
        for axis, (size, (before, after)) in enumerate(zip(spatial, pads)):
            if padding_mode == "reflect" and max(before, after) >= size:
                raise ValueError(
                    f"{op}: padding_mode='reflect' needs padding smaller than the input size, "
                    f"got padding {(before, after)} for an input dimension of size {size} "
                    f"(input shape {input_shape})"
                )
            if padding_mode == "circular" and max(before, after) > size:
                raise ValueError(
                    f"{op}: padding_mode='circular' needs padding no larger than the input size "
                    f"(it would wrap around more than once), got padding {(before, after)} for "
                    f"an input dimension of size {size} (input shape {input_shape})"
                )
        if in_channels == 0 and padding_mode in ("reflect", "replicate"):
            raise ValueError(
                f"{op}: padding_mode={padding_mode!r} needs a non-empty channel dimension, "
                f"got input of shape {input_shape}"
            )

    for size, (before, after), k, d in zip(spatial, pads, kernel, dilation):
        if size + before + after < d * (k - 1) + 1:
            padded = tuple(s + b + a for s, (b, a) in zip(spatial, pads))
            effective = tuple(dd * (kk - 1) + 1 for kk, dd in zip(kernel, dilation))
            raise ValueError(
                f"{op}: the padded input size per channel {padded} is smaller than the "
                f"(dilated) kernel size {effective}; the kernel can't be larger than the input"
            )

    if nsp == 1:
        spatial, kernel, stride, dilation, pads = (
            [1] + spatial, [1] + kernel, (1,) + stride, (1,) + dilation, ((0, 0),) + pads
        )
    return ConvSpec(
        op=op, batch=batch, in_channels=in_channels,
        in_height=spatial[0], in_width=spatial[1],
        out_channels=out_channels, kernel_height=kernel[0], kernel_width=kernel[1],
        stride_h=stride[0], stride_w=stride[1], dilation_h=dilation[0], dilation_w=dilation[1],
        pad_top=pads[0][0], pad_bottom=pads[0][1], pad_left=pads[1][0], pad_right=pads[1][1],
        groups=groups, padding_mode=padding_mode, has_bias=bias_shape is not None,
        dtype=np.dtype(dtype).name, batched=batched,
    )


# --------------------------------------------------------------------------- transposed


@dataclass(frozen=True)
class ConvTransposeSpec:
    """A validated transposed convolution (the gradient of a convolution with respect to its
    input), in 2-D geometry like :class:`ConvSpec` (conv_transpose1d has a height of 1).

    ``weight`` is (in_channels, out_channels / groups, kH, kW), as in torch.
    """

    op: str
    batch: int
    in_channels: int
    in_height: int
    in_width: int
    out_channels: int
    kernel_height: int
    kernel_width: int
    stride: tuple
    padding: tuple
    output_padding: tuple
    dilation: tuple
    groups: int
    has_bias: bool
    dtype: str
    batched: bool

    @cached_property
    def out_height(self) -> int:
        return transposed_output_size(self.in_height, self.kernel_height, self.stride[0],
                                      self.padding[0], self.output_padding[0], self.dilation[0])

    @cached_property
    def out_width(self) -> int:
        return transposed_output_size(self.in_width, self.kernel_width, self.stride[1],
                                      self.padding[1], self.output_padding[1], self.dilation[1])

    @cached_property
    def output_shape(self) -> tuple:
        spatial = (self.out_width,) if self.op.endswith("1d") else (self.out_height, self.out_width)
        head = (self.batch, self.out_channels) if self.batched else (self.out_channels,)
        return head + spatial

    def equivalent_padding(self) -> tuple:
        """((top, bottom), (left, right)) of the stride-1 convolution that computes this one
        on the zero-inserted input; negative values crop."""
        pads = []
        for k, p, op, d in zip((self.kernel_height, self.kernel_width), self.padding,
                               self.output_padding, self.dilation):
            before = d * (k - 1) - p
            pads.append((before, before + op))
        return tuple(pads)


def transposed_output_size(size, kernel, stride, padding, output_padding, dilation) -> int:
    """(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose_options(op: str, nsp: int, stride, padding, output_padding, dilation,
                           groups) -> tuple:
    """(stride, padding, output_padding, dilation, groups) checked and normalised: the rules
    that need no shapes (torch 2.13's order)."""
    if isinstance(padding, str):
        raise TypeError(f"{op}: padding must be an int or a tuple of {nsp} ints (no 'same' or "
                        f"'valid' for transposed convolutions), got {padding!r}")
    if not _is_int(groups):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    groups = operator.index(groups)
    stride = _int_tuple(op, "stride", stride, nsp)
    padding = _int_tuple(op, "padding", padding, nsp)
    output_padding = _int_tuple(op, "output_padding", output_padding, nsp)
    dilation = _int_tuple(op, "dilation", dilation, nsp)
    if any(s <= 0 for s in stride):
        raise ValueError(f"{op}: non-positive stride is not supported, got stride={stride}")
    if any(p < 0 for p in padding):
        raise ValueError(f"{op}: negative padding is not supported, got padding={padding}")
    if any(p < 0 for p in output_padding):
        raise ValueError(f"{op}: negative output_padding is not supported, got "
                         f"output_padding={output_padding}")
    if any(d <= 0 for d in dilation):
        raise ValueError(f"{op}: dilation should be greater than zero, got dilation={dilation}")
    if groups <= 0:
        raise ValueError(f"{op}: non-positive groups is not supported, got groups={groups}")
    if any(op_ >= s and op_ >= d for op_, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"{op}: output_padding must be smaller than either stride or dilation, "
                         f"got output_padding={output_padding}, stride={stride}, "
                         f"dilation={dilation}")
    return stride, padding, output_padding, dilation, groups


def conv_transpose_spec(op: str, input_shape, weight_shape, bias_shape, stride, padding,
                        output_padding, groups, dilation, dtype) -> ConvTransposeSpec:
    """Validate torch's ``conv_transpose1d/2d`` arguments (torch 2.13's rules and order)."""
    return _remembered(_conv_transpose_spec, op, _shape_key(input_shape),
                       _shape_key(weight_shape), _shape_key(bias_shape), stride, padding,
                       output_padding, groups, dilation, dtype)


def _conv_transpose_spec(op: str, input_shape, weight_shape, bias_shape, stride, padding,
                         output_padding, groups, dilation, dtype) -> ConvTransposeSpec:
    nsp = 1 if op.endswith("1d") else 2
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    if len(input_shape) not in (nsp + 1, nsp + 2):
        raise ValueError(f"{op}: expected {nsp + 1}D (unbatched) or {nsp + 2}D (batched) input, "
                         f"but got input of shape {input_shape}")
    if len(weight_shape) != nsp + 2:
        raise ValueError(f"{op}: expected a {nsp + 2}D weight (in_channels, out_channels/groups, "
                         f"{'kL' if nsp == 1 else 'kH, kW'}), but got weight of shape "
                         f"{weight_shape}")
    stride, padding, output_padding, dilation, groups = conv_transpose_options(
        op, nsp, stride, padding, output_padding, dilation, groups)

    batched = len(input_shape) == nsp + 2
    batch, in_channels, *spatial = input_shape if batched else (1,) + input_shape
    weight_in, out_per_group, *kernel = weight_shape
    if weight_in < groups or weight_in % groups:
        raise ValueError(f"{op}: given groups={groups}, expected weight to be divisible by "
                         f"{groups} at dimension 0 (at least {groups}), but got weight of shape "
                         f"{weight_shape}")
    if in_channels != weight_in:
        raise ValueError(f"{op}: given weight of shape {weight_shape}, expected input of shape "
                         f"{input_shape} to have {weight_in} channels (weight.shape[0]), but got "
                         f"{in_channels} channels")
    out_channels = out_per_group * groups
    if any(k <= 0 for k in kernel) or out_per_group <= 0:
        raise ValueError(f"{op}: weight of shape {weight_shape} has an empty dimension")
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise ValueError(f"{op}: expected bias to be 1-dimensional with {out_channels} elements "
                         f"(weight.shape[1] * groups), but got bias of shape {tuple(bias_shape)}")
    if any(s == 0 for s in spatial):
        raise ValueError(f"{op}: only zero batch inputs are supported, but got input of shape "
                         f"{input_shape}")
    sizes = [transposed_output_size(*args) for args in
             zip(spatial, kernel, stride, padding, output_padding, dilation)]
    if any(s <= 0 for s in sizes):
        raise ValueError(f"{op}: given input size per channel {tuple(spatial)}, the calculated "
                         f"output size per channel {tuple(sizes)} is too small")
    if nsp == 1:
        spatial, kernel = [1] + spatial, [1] + kernel
        stride, padding, output_padding, dilation = ((1,) + stride, (0,) + padding,
                                                     (0,) + output_padding, (1,) + dilation)
    return ConvTransposeSpec(
        op=op, batch=batch, in_channels=in_channels, in_height=spatial[0], in_width=spatial[1],
        out_channels=out_channels, kernel_height=kernel[0], kernel_width=kernel[1],
        stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
        groups=groups, has_bias=bias_shape is not None, dtype=np.dtype(dtype).name,
        batched=batched)


def output_padding_for(op: str, input_shape, output_size, kernel: tuple, stride: tuple,
                       padding: tuple, dilation: tuple) -> tuple:
    """The output_padding that makes a transposed convolution of ``input_shape`` produce
    ``output_size`` (spatial sizes, or the full shape with batch and channels), as
    ``torch.nn.ConvTranspose2d.forward(input, output_size)`` computes it."""
    nsp = len(kernel)
    head = len(tuple(input_shape)) - nsp
    if not isinstance(output_size, (tuple, list)) or not all(_is_int(v) for v in output_size):
        raise TypeError(f"{op}: output_size must be a tuple of ints, got {output_size!r}")
    sizes = list(output_size)
    if len(sizes) == head + nsp:
        sizes = sizes[head:]
    if len(sizes) != nsp:
        raise ValueError(f"{op}: for {head + nsp}D input, output_size must have {nsp} or "
                         f"{head + nsp} elements (got {len(output_size)})")
    spatial = tuple(input_shape)[head:]
    smallest = [transposed_output_size(s, k, st, p, 0, d)
                for s, k, st, p, d in zip(spatial, kernel, stride, padding, dilation)]
    largest = [m + st - 1 for m, st in zip(smallest, stride)]
    if any(not lo <= s <= hi for s, lo, hi in zip(sizes, smallest, largest)):
        raise ValueError(f"{op}: requested an output size of {list(sizes)}, but valid sizes "
                         f"range from {smallest} to {largest} (for an input of {spatial})")
    return tuple(s - lo for s, lo in zip(sizes, smallest))
