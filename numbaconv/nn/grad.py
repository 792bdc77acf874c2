"""Gradients of the convolutions, as ``torch.nn.grad``: NumPy arrays in and out (GPU
arrays in and out when ``grad_output`` is one: :mod:`numbaconv.gpu_arrays`, zero
padding).

* ``conv1d_input`` / ``conv2d_input``: the gradient with respect to the input, which
  is a transposed convolution of the output gradient (``numbaconv.conv_transpose2d``,
  its planner and kernels), with the output padding that gives back ``input_size``;
* ``conv1d_weight`` / ``conv2d_weight``: the gradient with respect to the weights, by
  the kernels of :mod:`numbaconv.cpu.weight_grad` (matrix products per group, or one
  dot product per weight for depthwise layers: ``registry.weight_grad_kernel``).

Arguments as torch's (stride, padding, dilation, groups), and besides: ``padding`` may be
``'same'`` or ``'valid'`` as in ``conv2d``, and ``padding_mode`` ('zeros', 'reflect',
'replicate', 'circular') gives the gradient of a convolution that pads so (``nn.Conv2d``'s
``padding_mode``): the input gradient of a border value then collects what every padded
copy of it received.

>>> import numpy as np
>>> from numbaconv import nn
>>> x = np.ones((1, 1, 3, 3), np.float32)
>>> w = np.ones((1, 1, 2, 2), np.float32)
>>> grad_out = np.ones((1, 1, 2, 2), np.float32)   # the shape of conv2d(x, w)
>>> nn.grad.conv2d_input(x.shape, w, grad_out)[0, 0]
array([[1., 2., 1.],
       [2., 4., 2.],
       [1., 2., 1.]], dtype=float32)
>>> nn.grad.conv2d_weight(x, w.shape, grad_out)[0, 0]
array([[4., 4.],
       [4., 4.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from .. import config, devices
from ..planner import padded_sources, with_padding_applied
from ..registry import weight_grad_choice, weight_grad_workspace
from ..spec import _is_int, check_float_array, conv_spec
from ..transposed import conv_transpose2d

__all__ = ["conv1d_input", "conv1d_weight", "conv2d_input", "conv2d_weight", "plan_weight"]

def _size(op: str, name: str, value) -> tuple:
    """A shape argument (``input_size``, ``weight_size``) as a tuple of ints."""
    try:
        size = tuple(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be a sequence of ints (a shape), "
                        f"got {type(value).__name__}") from None
    if not all(_is_int(s) and s >= 0 for s in size):
        raise ValueError(f"{op}: {name} must hold non-negative ints, got {size}")
    return tuple(int(s) for s in size)


def _grad_spec(op, input_size, weight_size, grad_output, stride, padding, dilation, groups,
               padding_mode, dtype):
    """The forward convolution's spec, with ``grad_output`` checked against its output."""
    forward = op.split("_")[0]  # conv1d or conv2d: what the spec describes
    try:
        spec = conv_spec(forward, input_size, weight_size, None, stride, padding, dilation,
                         groups, padding_mode, dtype)
    except (TypeError, ValueError) as error:  # named after the function the user called
        raise type(error)(str(error).replace(f"{forward}:", f"{op}:", 1)) from None
    if tuple(grad_output.shape) != tuple(spec.output_shape):
        raise ValueError(f"{op}: grad_output must have the shape of the convolution's output, "
                         f"{tuple(spec.output_shape)} for an input of shape {input_size} and "
                         f"a weight of shape {weight_size}, but got {grad_output.shape}")
    return spec


def _as_4d(spec, array, channels, height, width):
    return np.ascontiguousarray(array.reshape(spec.batch, channels, height, width),
                                dtype=spec.dtype)


def _fold_padding(grad_padded, spec):
    """The adjoint of padding with ``spec.padding_mode``: each padded value's gradient
    added onto the input value it copied."""
    rows, cols = padded_sources(spec)
    by_rows = np.zeros(grad_padded.shape[:2] + (spec.in_height, grad_padded.shape[3]),
                       grad_padded.dtype)
    for i, source in enumerate(rows):
        by_rows[:, :, source] += grad_padded[:, :, i]
    out = np.zeros(grad_padded.shape[:2] + (spec.in_height, spec.in_width), grad_padded.dtype)
    for j, source in enumerate(cols):
        out[:, :, :, source] += by_rows[:, :, :, j]
    return out


def _input_grad(op, input_size, weight, grad_output, stride, padding, dilation, groups,
                padding_mode):
    if devices.is_device_array(grad_output):
        from ..gpu_arrays import conv_input_grad

        return conv_input_grad(op, input_size, weight, grad_output, stride, padding,
                               dilation, groups, padding_mode)
    weight = check_float_array(op, "weight", weight)
    grad_output = check_float_array(op, "grad_output", grad_output)
    input_size = _size(op, "input_size", input_size)
    dtype = np.result_type(weight.dtype, grad_output.dtype)
    spec = _grad_spec(op, input_size, weight.shape, grad_output, stride, padding, dilation,
                      groups, padding_mode, dtype)
    if spec.batch == 0 or spec.in_channels == 0:
        return np.zeros(input_size, dtype)
    g = _as_4d(spec, grad_output, spec.out_channels, spec.out_height, spec.out_width)
    w = np.ascontiguousarray(weight.reshape(spec.out_channels, spec.in_channels_per_group,
                                            spec.kernel_height, spec.kernel_width), dtype=dtype)
    if spec.is_vector_product and spec.padding_mode == "zeros":
        return _vector_input_grad(spec, g, w).reshape(input_size)
    stride2 = (spec.stride_h, spec.stride_w)
    dilation2 = (spec.dilation_h, spec.dilation_w)
    reach_h = (spec.out_height - 1) * spec.stride_h + spec.dilation_h * (spec.kernel_height - 1) + 1
    reach_w = (spec.out_width - 1) * spec.stride_w + spec.dilation_w * (spec.kernel_width - 1) + 1
    # The rows and columns past the last window's reach get no gradient: the transposed
    # convolution's output padding adds them.
    extra = (spec.padded_height - reach_h, spec.padded_width - reach_w)
    symmetric = spec.pad_top == spec.pad_bottom and spec.pad_left == spec.pad_right
    if spec.padding_mode == "zeros" and symmetric:
        out = conv_transpose2d(g, w, None, stride2, (spec.pad_top, spec.pad_left), extra,
                               spec.groups, dilation2)
    else:  # the gradient of the padded input, then cropped or folded back
        padded = conv_transpose2d(g, w, None, stride2, 0, extra, spec.groups, dilation2)
        if spec.padding_mode == "zeros":
            out = padded[:, :, spec.pad_top:spec.pad_top + spec.in_height,
                         spec.pad_left:spec.pad_left + spec.in_width]
        else:
            out = _fold_padding(padded, spec)
    return np.ascontiguousarray(out).reshape(input_size)


def _vector_input_grad(spec, g, w):
    """The input gradient of a 1x1 layer on 1x1 images (squeeze-and-excitation, any
    stride): grad_output (N, K) @ weight (K, C), as the sum of K outer products
    (``cpu.outer``)."""
    from ..cpu.outer import COLUMN_BLOCK, outer_sums

    out = np.empty((spec.batch, spec.in_channels), spec.dtype)
    with config.one_share_for(spec.flops // 2):
        outer_sums(np.ascontiguousarray(g.reshape(spec.batch, spec.out_channels).T),
                   w.reshape(spec.out_channels, spec.in_channels), out,
                   workers=-(-spec.in_channels // COLUMN_BLOCK))
    return out


def _weight_grad(op, input, weight_size, grad_output, stride, padding, dilation, groups,
                 padding_mode):
    if devices.is_device_array(grad_output):
        from ..gpu_arrays import conv_weight_grad

        return conv_weight_grad(op, input, weight_size, grad_output, stride, padding,
                                dilation, groups, padding_mode)
    import numba  # (imported here: importing numbaconv compiles and imports no Numba)

    from ..cpu import weight_grad

    input = check_float_array(op, "input", input)
    grad_output = check_float_array(op, "grad_output", grad_output)
    weight_size = _size(op, "weight_size", weight_size)
    dtype = np.result_type(input.dtype, grad_output.dtype)
    spec = _grad_spec(op, input.shape, weight_size, grad_output, stride, padding, dilation,
                      groups, padding_mode, dtype)
    if spec.batch == 0 or spec.in_channels == 0 or spec.out_channels == 0:
        return np.zeros(weight_size, dtype)
    x = _as_4d(spec, input, spec.in_channels, spec.in_height, spec.in_width)
    g = _as_4d(spec, grad_output, spec.out_channels, spec.out_height, spec.out_width)
    spec, x = with_padding_applied(spec, x)
    needed = weight_grad_workspace(spec)
    if needed > config.memory_limit():
        raise config.memory_error(f"{op}: the weight gradient", needed)
    with config.one_share_for(spec.flops // 2):
        out = weight_grad.run(spec, x, g, numba.get_num_threads())
    return out.reshape(weight_size)


def plan_weight(input_shape, weight_size, stride=1, padding=0, dilation=1, groups=1,
                padding_mode="zeros", dtype=np.float32) -> dict:
    """What ``conv{1,2}d_weight`` would run for these arguments, without computing:
    {'kernel', 'reason', 'workspace_bytes'} (the input gradient is a transposed
    convolution: ``numbaconv.plan`` of its equivalent convolution explains that one).

    >>> from numbaconv import nn
    >>> nn.grad.plan_weight((8, 64, 56, 56), (64, 64, 3, 3), padding=1)["kernel"]
    'weight_winograd'
    >>> nn.grad.plan_weight((8, 64, 56, 56), (128, 64, 3, 3), stride=2, padding=1)["kernel"]
    'weight_tiles'
    >>> nn.grad.plan_weight((8, 32, 56, 56), (32, 1, 3, 3), padding=1, groups=32)["kernel"]
    'weight_taps'
    >>> nn.grad.plan_weight((8, 576, 14, 14), (576, 1, 3, 3), padding=1, groups=576)["kernel"]
    'depthwise_weight_lanes'
    """
    input_shape = _size("plan_weight", "input_shape", input_shape)
    op = "conv1d" if len(_size("plan_weight", "weight_size", weight_size)) == 3 else "conv2d"
    spec = conv_spec(op, input_shape, weight_size, None, stride, padding, dilation, groups,
                     padding_mode, dtype)
    if spec.padding_mode != "zeros":
        spec = spec.with_padding_applied()
    kernel, reason = weight_grad_choice(spec)
    return {"kernel": kernel, "reason": reason, "workspace_bytes": weight_grad_workspace(spec)}


_INPUT_DOC = """The gradient of ``conv{n}d`` with respect to its input, as
    ``torch.nn.grad.conv{n}d_input``.

    Parameters
    ----------
    input_size : sequence of ints
        The input's shape, (N, C_in, {sp}) or unbatched (C_in, {sp}).
    weight : array_like, (C_out, C_in / groups, {k})
    grad_output : array_like
        The gradient of the convolution's output, of its shape.
    stride, padding, dilation, groups, padding_mode
        The convolution's arguments, as for ``numbaconv.conv{n}d``.

    Returns
    -------
    numpy.ndarray of shape ``input_size``.
"""

_WEIGHT_DOC = """The gradient of ``conv{n}d`` with respect to its weight, as
    ``torch.nn.grad.conv{n}d_weight``.

    Parameters
    ----------
    input : array_like, (N, C_in, {sp}) or unbatched (C_in, {sp})
    weight_size : sequence of ints
        The weight's shape, (C_out, C_in / groups, {k}).
    grad_output : array_like
        The gradient of the convolution's output, of its shape.
    stride, padding, dilation, groups, padding_mode
        The convolution's arguments, as for ``numbaconv.conv{n}d``.

    Returns
    -------
    numpy.ndarray of shape ``weight_size``.
"""


def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros"):
    return _input_grad("conv2d_input", input_size, weight, grad_output, stride, padding,
                       dilation, groups, padding_mode)


def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros"):
    return _weight_grad("conv2d_weight", input, weight_size, grad_output, stride, padding,
                        dilation, groups, padding_mode)


def conv1d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros"):
    return _input_grad("conv1d_input", input_size, weight, grad_output, stride, padding,
                       dilation, groups, padding_mode)


def conv1d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros"):
    return _weight_grad("conv1d_weight", input, weight_size, grad_output, stride, padding,
                        dilation, groups, padding_mode)


for _function, _doc, _n in ((conv2d_input, _INPUT_DOC, 2), (conv2d_weight, _WEIGHT_DOC, 2),
                            (conv1d_input, _INPUT_DOC, 1), (conv1d_weight, _WEIGHT_DOC, 1)):
    _function.__doc__ = _doc.format(n=_n, sp="H, W" if _n == 2 else "L",
                                    k="kH, kW" if _n == 2 else "kL")
