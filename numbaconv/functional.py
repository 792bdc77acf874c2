"""Public functions: PyTorch's ``conv1d``/``conv2d`` for NumPy arrays.

Each public function turns its arguments into a :class:`~numbaconv.spec.ConvSpec`,
asks the planner for an algorithm and runs it. Inputs are never modified.
"""

from __future__ import annotations

import numpy as np

from . import config, devices, planner
from .epilogue import NO_EPILOGUE, as_epilogue
from .spec import check_float_dtype, check_float_operands, conv_spec, exact_argument as _exact
from ._dask_dispatch import on_dask_arrays
from .tracing import differentiable, is_traced

_SHAPES_DOC = """
    Parameters
    ----------
    input : array_like, (N, C_in, {sp}) or unbatched (C_in, {sp})
        float32 or float64.
    weight : array_like, (C_out, C_in / groups, {k})
    bias : array_like, (C_out,), optional
    stride, dilation : int or tuple of {n} ints
    padding : int, tuple of {n} ints, ``'valid'`` or ``'same'``
        ``'same'`` pads d*(k-1) in total per dimension, the odd extra at the end, and
        needs stride 1.
    groups : int
        Splits input and output channels into ``groups`` independent convolutions
        (``groups == C_in`` is a depthwise convolution).
    padding_mode : ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``
        As in ``torch.nn.Conv{n}d``: reflect needs padding < input size, circular
        padding <= input size.
    algorithm : str, keyword only
        ``'auto'`` (a deterministic rule, see :func:`numbaconv.plan`), ``'autotune'``
        (time the candidates once per spec and remember the fastest on this machine), or
        an algorithm name from ``numbaconv.algorithms()``; an explicit name that cannot
        run the arguments raises :class:`numbaconv.UnsupportedAlgorithm`.
    device : None, ``'cpu'`` or ``'cuda'``, keyword only
        Where to compute. None (default): where the arrays live. Arrays with
        ``__cuda_array_interface__`` (Numba device arrays, CuPy arrays, torch CUDA
        tensors) run on the GPU without a copy; ``'cuda'`` with NumPy arrays copies them
        in and the result back. Host and device arrays cannot be mixed.
    stream : numba.cuda stream, optional, keyword only
        The CUDA stream for every copy and kernel of a GPU call (default stream if None).

    Returns
    -------
    numpy.ndarray, (N, C_out, {out}) or (C_out, {out})
        A new array of the promoted dtype (float32 with float64 computes in float64), with
        {formula}
        On the GPU with device arrays in: a ``numba.cuda`` device array, returned without
        waiting for the stream; wrap it without a copy with ``cupy.asarray(out)`` or
        ``torch.as_tensor(out, device="cuda")``, or copy it with ``out.copy_to_host()``.

    Raises
    ------
    TypeError
        Non-float arrays or arguments of the wrong type.
    ValueError
        Every value or shape torch rejects; host and device arrays mixed.
    numbaconv.CudaUnavailable
        A GPU call without the ``numba-cuda`` package or without a usable GPU.
"""


def _prepare(op, input, weight, bias, stride, padding, dilation, groups, padding_mode,
             device=None):
    """(spec, device, operands): NumPy arrays on the host, the untouched objects on a GPU."""
    where = devices.placement(op, device, {"input": input, "weight": weight, "bias": bias})
    if devices.is_device_array(input):  # then all of them are: shapes from the interface
        operands = (input, weight, bias)
        described = [None if a is None else devices.shape_and_dtype(a) for a in operands]
        for name, info in zip(("input", "weight", "bias"), described):
            if info is not None:
                check_float_dtype(op, name, info[1])
        shapes = [None if info is None else info[0] for info in described]
        dtype = np.result_type(*[info[1] for info in described if info is not None])
    else:
        *operands, dtype = check_float_operands(op, input, weight, bias)
        shapes = [None if a is None else a.shape for a in operands]
    spec = conv_spec(op, shapes[0], shapes[1], shapes[2], stride, padding, dilation, groups,
                     padding_mode, dtype)
    return spec, where, operands


def _as_4d(spec, x, w, b):
    """Views of the user's arrays in the kernels' 4-D NCHW / KCRS form, in the spec's dtype."""
    if x.ndim != 4:  # conv1d or unbatched
        x = x.reshape(spec.batch, spec.in_channels, spec.in_height, spec.in_width)
    if w.ndim != 4:
        w = w.reshape(spec.out_channels, spec.in_channels_per_group, spec.kernel_height,
                      spec.kernel_width)
    dtype = spec.dtype
    if x.dtype != dtype:
        x = x.astype(dtype)
    if w.dtype != dtype:
        w = w.astype(dtype)
    if b is not None and b.dtype != dtype:
        b = b.astype(dtype)
    return x, w, b


# Repeated calls. A loop over batches calls conv2d with the same shapes and arguments
# again and again; each time, validating them and planning runs a few hundred lines of
# Python whose code and data the convolution itself has just pushed out of the caches:
# 0.04 ms on a quiet machine, 0.15-0.2 ms right after a large layer (measured on the
# depthwise bench layer, a 0.3-0.6 ms convolution). So the spec and plan of plain CPU calls
# (NumPy arrays; arguments that are ints, strings or tuples of ints, whose equality means
# identical meaning) are kept by their shapes, dtypes and arguments. The memory limit is
# still checked on every call; a plan that fell back for lack of memory is not kept.
_REPEATS: dict = {}
_REPEATS_MAX = 256


def _repeat_key(op, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                algorithm, device, stream, post=NO_EPILOGUE):
    """The key of a plain CPU call in ``_REPEATS``, or None for any other call."""
    if device not in (None, "cpu") or stream is not None or algorithm == "autotune" \
            or config.AUTOTUNE:
        return None
    if type(input) is not np.ndarray or type(weight) is not np.ndarray \
            or not (bias is None or type(bias) is np.ndarray):
        return None
    if not (_exact(stride) and _exact(padding) and _exact(dilation) and _exact(groups)
            and type(padding_mode) is str and type(algorithm) is str):
        return None
    return (op, input.shape, input.dtype, weight.shape, weight.dtype,
            None if bias is None else (bias.shape, bias.dtype),
            stride, padding, dilation, groups, padding_mode, algorithm,
            None if post is NO_EPILOGUE else post.tobytes(),
            config.weights_are_fresh())  # (training steps plan Winograd differently)


def _prepared_call(spec, chosen, input, weight, bias, post):
    """The function computing a repeated call from the user's arrays: the plan's runner
    (``planner.prepare``), behind :func:`_as_4d` unless the arrays already are 4-D in the
    spec's dtype (the repeat key holds their shapes and dtypes, so then every repeat's are)."""
    run = planner.prepare(chosen, post)
    if input.ndim == weight.ndim == 4 and input.dtype == weight.dtype == spec.dtype \
            and (bias is None or bias.dtype == spec.dtype):
        return run
    return lambda x, w, b: run(*_as_4d(spec, x, w, b))


def _conv(op, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
          device, stream, post=NO_EPILOGUE):
    key = _repeat_key(op, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                      algorithm, device, stream, post)
    repeat = _REPEATS.get(key) if key is not None else None
    if repeat is not None and repeat[2] <= config.memory_limit():
        spec, chosen, _, prepared = repeat
        if prepared is None:  # the second call: from now on, the plan's own runner
            prepared = _prepared_call(spec, chosen, input, weight, bias, post)
            _REPEATS[key] = (spec, chosen, repeat[2], prepared)
        return prepared(input, weight, bias)
    spec, where, operands = _prepare(op, input, weight, bias, stride, padding, dilation,
                                     groups, padding_mode, device)
    chosen = planner.make_plan(spec, algorithm, where)
    fell_back = algorithm == "auto" and chosen.algorithm != planner.auto_rule(spec)[0]
    if key is not None and not fell_back and chosen.fits:
        if len(_REPEATS) >= _REPEATS_MAX:
            _REPEATS.clear()
        _REPEATS[key] = (spec, chosen, planner.needed_bytes(spec, chosen.algorithm), None)
    if where == "cuda":
        if post is not NO_EPILOGUE:
            raise ValueError(f"{op}: activation= is fused on the CPU only; on the GPU run "
                             f"the convolution, then the activation")
        from .cuda.runtime import require_gpu

        require_gpu()
        from .cuda.execute import execute

        return execute(chosen, *operands, stream=stream,
                       match_torch_nonfinite=algorithm in planner.SPECIAL)
    if stream is not None:
        raise ValueError(f"{op}: stream= applies to GPU calls only (device arrays or "
                         f"device='cuda'), got stream={stream!r} for a CPU call")
    return planner.execute(chosen, *_as_4d(spec, *operands), post)


@differentiable
@on_dask_arrays
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto", device=None, stream=None):
    return _conv("conv2d", input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, algorithm, device, stream)


@differentiable
@on_dask_arrays
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto", device=None, stream=None):
    return _conv("conv1d", input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, algorithm, device, stream)


def fused_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", *, activation=None, algorithm="auto"):
    """``activation(conv2d(input, weight, bias, ...))`` with the activation applied by the
    convolution kernels to each output row as they write it: one pass over the output
    instead of two (inference; what ``numbaconv.nn.fuse`` and ``numbaconv.onnx`` use).

    Parameters as :func:`conv2d` (CPU only), and ``activation``: None, ``"relu"``,
    ``"relu6"``, ``"silu"``, ``"hardswish"``, or ``("clamp", low, high)`` (torch's
    hardtanh, ONNX Clip; either bound None for none). Results equal the two calls'
    (the same rounding: the activation reads the finished convolution output). The
    Winograd algorithms apply it right after their output transform instead.

    Examples
    --------
    >>> import numpy as np, numbaconv
    >>> x = np.array([[[[-1.0, 2.0]]]], np.float32); w = np.ones((1, 1, 1, 1), np.float32)
    >>> numbaconv.fused_conv2d(x, w, activation="relu")
    array([[[[0., 2.]]]], dtype=float32)
    """
    if any(is_traced(a) for a in (input, weight, bias)):
        raise NotImplementedError("fused_conv2d is for inference and has no gradient: while "
                                  "training, call conv2d and then the activation")
    post = as_epilogue(activation)
    return _conv("conv2d", input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, algorithm, "cpu", None, post)


def plan(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
         padding_mode="zeros", *, algorithm="auto", device=None):
    """Decide how :func:`conv2d` or :func:`conv1d` (a 3-D weight with a 2-D/3-D input) would run.

    Takes the same arguments and validates them the same way, but computes nothing and
    compiles nothing (except timing the candidates when ``algorithm='autotune'`` has no
    cached decision yet). Only ``.shape`` and ``.dtype`` of the arrays are read.

    Returns a :class:`numbaconv.planner.Plan` with ``algorithm``, ``device`` (``'cpu'`` or
    ``'cuda'``, chosen as in :func:`conv2d`; planning for the GPU needs no GPU),
    ``output_shape``, ``flops``, ``workspace_bytes``, ``reason``, and ``kernel``: which of
    the algorithm's kernels runs (``kernel_summary`` says what it does).

    Examples
    --------
    >>> import numpy as np, numbaconv
    >>> x = np.zeros((8, 64, 56, 56), np.float32); w = np.zeros((64, 64, 3, 3), np.float32)
    >>> numbaconv.plan(x, w, padding=1).output_shape
    (8, 64, 56, 56)
    """
    ndim = lambda a: len(devices.shape_and_dtype(a)[0]) if devices.is_device_array(a) else np.ndim(a)
    op = "conv1d" if ndim(weight) == 3 and ndim(input) in (2, 3) else "conv2d"
    spec, where, _ = _prepare(op, input, weight, bias, stride, padding, dilation, groups,
                              padding_mode, device)
    return planner.make_plan(spec, algorithm, where)


conv2d.__doc__ = """2-D convolution (cross-correlation), exactly as ``torch.nn.functional.conv2d``
    with ``torch.nn.Conv2d``'s ``padding_mode``.
""" + _SHAPES_DOC.format(
    sp="H, W", k="kH, kW", n=2, out="H_out, W_out",
    formula="H_out = floor((H + pad_top + pad_bottom - dilation[0] * (kH - 1) - 1) / stride[0] + 1)"
            "\n        and W_out likewise.",
) + """
    Examples
    --------
    >>> import numpy as np, numbaconv
    >>> x = np.ones((1, 1, 4, 4), np.float32)
    >>> w = np.ones((1, 1, 3, 3), np.float32)
    >>> numbaconv.conv2d(x, w, padding=1)[0, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]], dtype=float32)
"""

conv1d.__doc__ = """1-D convolution (cross-correlation), exactly as ``torch.nn.functional.conv1d``
    with ``torch.nn.Conv1d``'s ``padding_mode``.
""" + _SHAPES_DOC.format(
    sp="L", k="kL", n=1, out="L_out",
    formula="L_out = floor((L + pad_left + pad_right - dilation * (kL - 1) - 1) / stride + 1).",
) + """
    Examples
    --------
    >>> import numpy as np, numbaconv
    >>> numbaconv.conv1d(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 2)))
    array([[[1., 3., 5., 7.]]])
"""
