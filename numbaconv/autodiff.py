"""numbaconv's operations as ``autograd`` primitives, each with its vector-Jacobian product.

Why autograd (the HIPS package, ``pip install numbaconv[train]``): it traces ordinary
Python and NumPy code (loops, residual additions, concatenations through
``autograd.numpy``) and keeps the graph bookkeeping, reverse-mode accumulation and
higher-level ``grad``/``value_and_grad`` that an engine of our own would have to
re-implement and maintain; numbaconv only adds what autograd cannot know: the
gradients of its own compiled kernels. Each primitive computes its forward pass with
the very function users call (on the boxes' raw arrays), and its gradient with
numbaconv's kernels: a convolution's input gradient is a transposed convolution, its
weight gradient :mod:`numbaconv.cpu.weight_grad` (see :mod:`numbaconv.nn.grad`).

Functions marked ``@tracing.differentiable`` reach their primitive here when called with a
box (:func:`primitive_of`); a numbaconv function without a gradient raises instead of
returning a wrong one (``spec.check_float_array`` refuses boxes).
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
from autograd.extend import defvjp, defvjp_argnums, primitive

from . import (activations, config, functional, interpolation, losses, normalization, padding,
               pooling, transposed)
from .dropout import _probability
from .nn import grad as conv_grad
from .pool_spec import pool_spec
from .random import as_generator
from .spec import conv_spec

_PRIMITIVES: dict = {}


def primitive_of(name: str):
    """The traced version of the differentiable numbaconv function ``name``."""
    return _PRIMITIVES[name]


def _define(function, *vjps, argnums=None):
    """Make ``function`` (a ``@differentiable`` public function) a primitive whose
    gradients with respect to its first arguments (or those at positions ``argnums``) are
    the ``vjps`` makers (autograd's ``(ans, *args, **kwargs) -> (g -> gradient)``)."""
    traced = primitive(function.raw)
    defvjp(traced, *vjps, argnums=range(len(vjps)) if argnums is None else argnums)
    _PRIMITIVES[function.__name__] = traced
    return traced


def _channel_sum(g, channel_axis, like):
    """g summed over every axis but ``channel_axis``: the gradient of a per-channel bias."""
    axes = tuple(a for a in range(np.ndim(g)) if a != channel_axis)
    return _like(np.sum(g, axis=axes), like)


def _conv_bias_vjp(nsp):
    """The bias VJP maker of a (transposed) convolution with ``nsp`` spatial axes."""
    def vjp_maker(ans, input, weight, bias=None, *args, **kwargs):
        return lambda g: _channel_sum(g, np.ndim(g) - nsp - 1, bias)
    return vjp_maker


def _like(gradient, value):
    """``gradient`` in the dtype and shape of the argument it belongs to."""
    return np.asarray(gradient, dtype=np.asarray(value).dtype).reshape(np.shape(value))


def _sum_to(gradient, shape):
    """Sum a broadcast gradient back to ``shape`` (a bias added to every row)."""
    gradient = np.asarray(gradient)
    while gradient.ndim > len(shape):
        gradient = gradient.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and gradient.shape[axis] != 1:
            gradient = gradient.sum(axis=axis, keepdims=True)
    return gradient


# --------------------------------------------------------------------------- convolutions


def _conv(function, nsp, input_grad, weight_grad):
    def conv_args(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", **_):
        return dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                    padding_mode=padding_mode)

    _define(function,
            lambda ans, input, weight, bias=None, *args, **kwargs: lambda g: _like(
                input_grad(np.shape(input), weight, g, **conv_args(*args, **kwargs)), input),
            lambda ans, input, weight, bias=None, *args, **kwargs: lambda g: _like(
                weight_grad(input, np.shape(weight), g, **conv_args(*args, **kwargs)), weight),
            _conv_bias_vjp(nsp))


_conv(functional.conv2d, 2, conv_grad.conv2d_input, conv_grad.conv2d_weight)
_conv(functional.conv1d, 1, conv_grad.conv1d_input, conv_grad.conv1d_weight)


def _linear_input(ans, input, weight, bias=None):
    if np.ndim(weight) == 1:
        return lambda g: _like(np.multiply.outer(g, weight), input)

    def vjp(g):  # g (*, out) @ weight (out, in), the weight read as it is
        rows = _float_rows(g, np.shape(weight)[0], weight)
        w = _float_rows(weight, np.shape(weight)[1], g)
        return _like(activations.matrix_product(rows, w).reshape(np.shape(input)), input)
    return vjp


def _linear_weight(ans, input, weight, bias=None):
    x = np.asarray(input)
    if np.ndim(weight) == 1:
        return lambda g: _like(np.tensordot(g, x, axes=(range(np.ndim(g)), range(np.ndim(g)))),
                               weight)

    def vjp(g):  # g^T (out, rows) @ x (rows, in): x read as it is, g transposed
        from .cpu.layout import transposed as transposed_copy

        rows = _float_rows(g, np.shape(weight)[0], x)
        inputs = _float_rows(x, x.shape[-1], g)
        return _like(activations.matrix_product(transposed_copy(rows), inputs), weight)
    return vjp


def _float_rows(a, width, other):
    """``a`` as rows of ``width`` values, C-contiguous, in the dtype ``a`` and ``other``
    promote to (the products take one float dtype)."""
    dtype = np.result_type(np.asarray(a).dtype, np.asarray(other).dtype)
    return np.ascontiguousarray(np.reshape(a, (-1, width)), dtype=dtype)


_define(activations.linear, _linear_input, _linear_weight,
        lambda ans, input, weight, bias=None: lambda g: _like(_sum_to(g, np.shape(bias)), bias))


def _conv_transpose(function, nsp, conv, weight_grad):
    """y = conv_transpose(x, w) is the adjoint of conv(., w): its input gradient is the
    convolution of the output gradient, its weight gradient conv_weight(g, w, x)."""
    def conv_args(stride=1, padding=0, output_padding=0, groups=1, dilation=1, **_):
        return dict(stride=stride, padding=padding, dilation=dilation, groups=groups)

    def input_vjp(ans, input, weight, bias=None, *args, **kwargs):
        # Output padding adds outputs no input reaches: the convolution of the gradient
        # then covers positions past the input's, which are cropped off.
        crop = (Ellipsis,) + tuple(slice(0, n) for n in np.shape(input)[-nsp:])
        return lambda g: _like(conv(g, weight, None, **conv_args(*args, **kwargs))[crop],
                               input)

    def weight_vjp(ans, input, weight, bias=None, *args, **kwargs):
        options = conv_args(*args, **kwargs)

        def vjp(g):
            # The adjoint convolution of g covers the input's positions and, with output
            # padding, a few more, which no input reached: zeros there.
            covered = conv_spec(f"conv{nsp}d", np.shape(g), np.shape(weight), None,
                                padding_mode="zeros", dtype=np.result_type(g, input),
                                **options).output_shape
            extra = [(0, c - n) for c, n in zip(covered, np.shape(input))]
            x = np.pad(np.asarray(input), extra) if any(e for _, e in extra) else input
            return _like(weight_grad(g, np.shape(weight), x, **options), weight)
        return vjp

    _define(function, input_vjp, weight_vjp, _conv_bias_vjp(nsp))


_conv_transpose(transposed.conv_transpose2d, 2, functional.conv2d, conv_grad.conv2d_weight)
_conv_transpose(transposed.conv_transpose1d, 1, functional.conv1d, conv_grad.conv1d_weight)


# --------------------------------------------------------------------------- activations


def _elementwise(function, derivative):
    """A one-input activation whose gradient is g * derivative(ans, x, *args)."""
    _define(function, lambda ans, input, *args, **kwargs: lambda g: _like(
        g * derivative(ans, np.asarray(input), *args, **kwargs), input))


def _between(low, high):
    return lambda ans, x, *args, **kwargs: ((x > low) & (x < high)).astype(x.dtype)


_define(activations.relu, lambda ans, input: lambda g: _like(activations.relu_backward(ans, g),
                                                              input))
_elementwise(activations.relu6, _between(0, 6))
_elementwise(activations.hardtanh, lambda ans, x, min_val=-1.0, max_val=1.0, inplace=False:
             ((x > min_val) & (x < max_val)).astype(x.dtype))
_elementwise(activations.leaky_relu, lambda ans, x, negative_slope=0.01, *args: np.where(
    x > 0, x.dtype.type(1), x.dtype.type(negative_slope)))
_elementwise(activations.sigmoid, lambda ans, x: ans * (1 - ans))
_elementwise(activations.tanh, lambda ans, x: 1 - ans * ans)


def _silu_derivative(ans, x, inplace=False):
    s = activations.sigmoid(x)
    return s * (1 + x * (1 - s))


_elementwise(activations.silu, _silu_derivative)
# (torch multiplies by 1/6 rounded to float32, float64 inputs too)
_elementwise(activations.hardsigmoid, lambda ans, x, inplace=False: np.where(
    (x > -3) & (x < 3), x.dtype.type(np.float32(1) / np.float32(6)), x.dtype.type(0)))
# torch's hardswish_backward: 0 below -3, x / 3 + 1/2 from -3 to 3 (both included), 1 above
_elementwise(activations.hardswish, lambda ans, x, inplace=False: np.where(
    x < -3, x.dtype.type(0), np.where(x <= 3, x / 3 + x.dtype.type(0.5), x.dtype.type(1))))


def _gelu_derivative(ans, x, approximate="none"):
    if approximate == "tanh":  # torch's GeluBackward for the tanh approximation
        beta, kappa = math.sqrt(2 / math.pi), 0.044715
        inner = np.tanh(beta * (x + kappa * x * x * x))
        return 0.5 * (1 + inner) + 0.5 * x * (1 - inner * inner) * beta * (1 + 3 * kappa * x * x)
    from scipy import special

    cdf = 0.5 * (1 + special.erf(x / math.sqrt(2)))
    return cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


_elementwise(activations.gelu, _gelu_derivative)


def _softmax_axis(op, x, dim):
    with warnings.catch_warnings():  # the implicit dim was warned about in the forward pass
        warnings.simplefilter("ignore")
        return activations._softmax_dim(op, np.asarray(x), dim, 3)


def _softmax_vjp(ans, input, dim=None, _stacklevel=3, dtype=None):
    axis = _softmax_axis("softmax", ans, dim)
    return lambda g: _like(ans * (g - np.sum(g * ans, axis=axis, keepdims=True)), input)


def _log_softmax_vjp(ans, input, dim=None, _stacklevel=3, dtype=None):
    axis = _softmax_axis("log_softmax", ans, dim)
    return lambda g: _like(g - np.exp(ans) * np.sum(g, axis=axis, keepdims=True), input)


_define(activations.softmax, _softmax_vjp)
_define(activations.log_softmax, _log_softmax_vjp)


# --------------------------------------------------------------------------- pooling


def _max_pool_vjp(function):
    def vjp(ans, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
            return_indices=False):
        x = np.asarray(input)
        spec = pool_spec(function.__name__, x.shape, kernel_size, stride, padding, dilation,
                         ceil_mode)

        def scatter(g):  # each output's gradient onto the input value it took
            from .cpu.pool import max_pool2d_backward

            x4 = pooling._as_4d(spec, x)
            g4 = np.ascontiguousarray(np.reshape(g, (spec.batch, spec.channels,
                                                     spec.out_height, spec.out_width)),
                                      x.dtype)
            out4 = np.ascontiguousarray(np.reshape(ans, g4.shape), x.dtype)
            dx = np.empty(x4.shape, x.dtype)
            if dx.size:
                with config.one_share_for(x.size * config.WORK_PER_VALUE_READ):
                    max_pool2d_backward(x4, out4, g4, dx, *spec.kernel, *spec.stride,
                                        *spec.padding, *spec.dilation)
            return _like(dx, x)
        return scatter
    return vjp


def _max_pool(function):
    traced = primitive(function.raw)
    defvjp(traced, _max_pool_vjp(function))

    def checked(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False):
        if return_indices:
            raise NotImplementedError(f"{function.__name__}: return_indices=True while a "
                                      f"gradient is traced is not supported; call it without")
        return traced(input, kernel_size, stride, padding, dilation, ceil_mode)
    _PRIMITIVES[function.__name__] = checked


_max_pool(pooling.max_pool2d)
_max_pool(pooling.max_pool1d)


def _avg_pool2d_vjp(ans, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True, divisor_override=None):
    x = np.asarray(input)
    spec = pool_spec("avg_pool2d", x.shape, kernel_size, stride, padding, 1, ceil_mode)
    (kh, kw), (sh, sw), (ph, pw) = spec.kernel, spec.stride, spec.padding
    oh, ow = spec.out_height, spec.out_width
    # 1 / each window's divisor, from the forward pass itself on ones: avg(ones) is the
    # window's count of input values over its divisor, and that count comes from a sum.
    ones = np.ones((1, 1) + x.shape[-2:], x.dtype)
    mean_of_ones = pooling.avg_pool2d(ones, kernel_size, stride, padding, ceil_mode,
                                      count_include_pad, divisor_override)[0, 0]
    rows = max(x.shape[-2] + 2 * ph, (oh - 1) * sh + kh)
    cols = max(x.shape[-1] + 2 * pw, (ow - 1) * sw + kw)
    inside = np.zeros((rows, cols), x.dtype)
    inside[ph:ph + x.shape[-2], pw:pw + x.shape[-1]] = 1
    count = sum(inside[r:r + sh * (oh - 1) + 1:sh, s:s + sw * (ow - 1) + 1:sw]
                for r in range(kh) for s in range(kw))
    inverse_divisor = np.divide(mean_of_ones, count, out=np.zeros_like(mean_of_ones),
                                where=count > 0)

    def vjp(g):
        share = np.asarray(g) * inverse_divisor
        padded = np.zeros(x.shape[:-2] + (rows, cols), share.dtype)
        for r in range(kh):
            for s in range(kw):
                padded[..., r:r + sh * (oh - 1) + 1:sh, s:s + sw * (ow - 1) + 1:sw] += share
        return _like(padded[..., ph:ph + x.shape[-2], pw:pw + x.shape[-1]], x)
    return vjp


_define(pooling.avg_pool2d, _avg_pool2d_vjp)


def _adaptive_avg_pool2d_vjp(ans, input, output_size):
    x = np.asarray(input)
    h, w = x.shape[-2:]
    oh, ow = np.shape(ans)[-2:]

    def vjp(g):
        out = np.zeros(x.shape, np.result_type(x, g))
        for i in range(oh):
            r0, r1 = i * h // oh, -(-(i + 1) * h // oh)
            for j in range(ow):
                c0, c1 = j * w // ow, -(-(j + 1) * w // ow)
                out[..., r0:r1, c0:c1] += g[..., i:i + 1, j:j + 1] / ((r1 - r0) * (c1 - c0))
        return _like(out, x)
    return vjp


_define(pooling.adaptive_avg_pool2d, _adaptive_avg_pool2d_vjp)


# --------------------------------------------------------------------------- normalisation


def _normalized(x, axes, eps):
    """(x_hat, inverse std) over ``axes`` (biased variance), keeping dims."""
    mean = x.mean(axis=axes, keepdims=True)
    inverse_std = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return (x - mean) * inverse_std, inverse_std


def _normalized_input_gradient(g_hat, x_hat, inverse_std, axes):
    """The gradient of x for the gradient g_hat of x_hat = (x - mean) * inverse_std."""
    count = math.prod(x_hat.shape[a] for a in axes)
    return inverse_std / count * (count * g_hat - g_hat.sum(axis=axes, keepdims=True)
                                  - x_hat * (g_hat * x_hat).sum(axis=axes, keepdims=True))


def _batch_norm_vjp(argnums, ans, args, kwargs):
    """batch_norm's gradients with respect to input, weight and bias (positions 0, 3, 4),
    all from one kernel (:func:`numbaconv.cpu.norm.channel_backward`), which recomputes
    the batch statistics from the input at the backward pass: nothing is computed while
    the forward pass is traced."""
    from .cpu.norm import channel_backward

    unknown = set(argnums) - {0, 3, 4}
    if unknown:
        raise NotImplementedError(f"batch_norm: no gradient with respect to argument(s) "
                                  f"{sorted(unknown)} (running statistics)")
    if not kwargs and len(args) == len(_BATCH_NORM_SIGNATURE.parameters):
        a = dict(zip(_BATCH_NORM_SIGNATURE.parameters, args))  # (as the modules call it)
    else:  # (binding costs ~15 us)
        bound = _BATCH_NORM_SIGNATURE.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
    x = np.asarray(a["input"])
    channels = x.shape[1]
    batch_stats = bool(a["training"]) or a["running_mean"] is None
    # (eval mode: the statistics as they are now, copied in case they are updated before
    # the backward pass)
    mean, var = (np.zeros(1), np.zeros(1)) if batch_stats else (
        np.array(a["running_mean"], np.float64), np.array(a["running_var"], np.float64))
    weight, bias = a["weight"], a["bias"]
    scale = np.ones(channels) if weight is None else np.array(weight, np.float64)
    eps = float(a["eps"])

    def vjp(g):
        dtype = np.result_type(x, g)
        x3 = normalization._as_3d(x.astype(dtype, copy=False))
        g3 = normalization._as_3d(np.asarray(g, dtype))
        dx3 = np.empty(x3.shape, dtype)
        dweight, dbias = np.empty(channels), np.empty(channels)
        if x3.size:
            with config.one_share_for(3 * x.size * config.WORK_PER_VALUE_READ):
                channel_backward(x3, g3, mean, var, batch_stats, scale, eps, dx3, dweight,
                                 dbias)
        else:
            dweight[:] = dbias[:] = 0
        gradients = {0: (dx3, x), 3: (dweight, weight), 4: (dbias, bias)}
        return tuple(_like(*gradients[i]) for i in argnums)
    return vjp


_BATCH_NORM_SIGNATURE = inspect.signature(normalization.batch_norm.raw)
_PRIMITIVES["batch_norm"] = primitive(normalization.batch_norm.raw)
defvjp_argnums(_PRIMITIVES["batch_norm"], _batch_norm_vjp)


def _layer_norm_vjps():
    def parts(input, normalized_shape, eps):
        x = np.asarray(input)
        ndim = len(np.atleast_1d(np.asarray(normalized_shape)))
        axes = tuple(range(x.ndim - ndim, x.ndim))
        return x, axes, _normalized(x, axes, eps)

    def input_vjp(ans, input, normalized_shape, weight=None, bias=None, eps=1e-05):
        x, axes, (x_hat, inverse_std) = parts(input, normalized_shape, eps)
        scale = 1 if weight is None else np.asarray(weight)
        return lambda g: _like(_normalized_input_gradient(g * scale, x_hat, inverse_std, axes),
                               input)

    def weight_vjp(ans, input, normalized_shape, weight=None, bias=None, eps=1e-05):
        x, axes, (x_hat, _) = parts(input, normalized_shape, eps)
        lead = tuple(range(x.ndim - len(axes)))
        return lambda g: _like(np.sum(g * x_hat, axis=lead), weight)

    def bias_vjp(ans, input, normalized_shape, weight=None, bias=None, eps=1e-05):
        lead = tuple(range(np.ndim(input) - np.ndim(bias)))
        return lambda g: _like(np.sum(g, axis=lead), bias)

    _define(normalization.layer_norm, input_vjp, weight_vjp, bias_vjp, argnums=(0, 2, 3))


def _group_norm_vjps():
    def parts(input, num_groups, eps):
        x = np.asarray(input)
        grouped = x.reshape(x.shape[0], num_groups, -1)
        x_hat, inverse_std = _normalized(grouped, (2,), eps)
        return x, grouped, x_hat, inverse_std

    def channel_shape(x):
        return (1, x.shape[1]) + (1,) * (x.ndim - 2)

    def input_vjp(ans, input, num_groups, weight=None, bias=None, eps=1e-05):
        x, grouped, x_hat, inverse_std = parts(input, num_groups, eps)
        scale = 1 if weight is None else np.reshape(weight, channel_shape(x))

        def vjp(g):
            g_hat = (np.asarray(g) * scale).reshape(grouped.shape)
            return _like(_normalized_input_gradient(g_hat, x_hat, inverse_std, (2,)), input)
        return vjp

    def weight_vjp(ans, input, num_groups, weight=None, bias=None, eps=1e-05):
        x, _, x_hat, _ = parts(input, num_groups, eps)
        axes = (0,) + tuple(range(2, x.ndim))
        return lambda g: _like(np.sum(g * x_hat.reshape(x.shape), axis=axes), weight)

    def bias_vjp(ans, input, num_groups, weight=None, bias=None, eps=1e-05):
        return lambda g: _channel_sum(g, 1, bias)

    _define(normalization.group_norm, input_vjp, weight_vjp, bias_vjp, argnums=(0, 2, 3))


_layer_norm_vjps()
_group_norm_vjps()


# --------------------------------------------------------------------------- dropout


def _traced_dropout(op, mask_shape):
    """``op`` (dropout, dropout2d) of a traced input: the mask drawn as numbaconv's
    function draws it (one value per ``mask_shape(input shape)``), then multiplied in,
    which autograd differentiates by itself."""
    def traced(input, p=0.5, training=True, inplace=False, *, rng=None):
        p = _probability(op, p)
        if inplace:
            raise NotImplementedError(f"{op}: inplace=True while a gradient is traced is not "
                                      f"supported")
        if np.ndim(input) < 2 and op == "dropout2d":
            raise ValueError(f"{op}: expected an input with at least 2 dimensions, got shape "
                             f"{np.shape(input)}")
        if not training or p == 0.0:
            return input * 1
        if p == 1.0:
            return input * 0
        dtype = np.dtype(input.dtype)
        keep = as_generator(rng).random(mask_shape(np.shape(input))) >= p
        return input * np.where(keep, dtype.type(1.0 / (1.0 - p)), dtype.type(0))
    return traced


_PRIMITIVES["dropout"] = _traced_dropout("dropout", lambda shape: shape)
_PRIMITIVES["dropout2d"] = _traced_dropout(
    "dropout2d", lambda shape: shape[:2] + (1,) * (len(shape) - 2))


def _traced_rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, rng=None):
    """rrelu of a traced input: the slopes drawn as ``numbaconv.rrelu`` draws them, then
    applied by autograd's ``where``, which it differentiates by itself."""
    import autograd.numpy as anp

    lower, upper = float(lower), float(upper)
    if lower > upper:
        raise ValueError(f"rrelu: lower bound should be less than or equal to the upper bound, "
                         f"got lower={lower}, upper={upper}")
    dtype = np.dtype(input.dtype)
    if training:
        slopes = as_generator(rng).uniform(lower, upper, size=np.shape(input)).astype(dtype)
    else:
        slopes = dtype.type((lower + upper) / 2)
    return anp.where(input > 0, input, input * slopes)


_PRIMITIVES["rrelu"] = _traced_rrelu


# --------------------------------------------------------------------------- losses


def _loss_vjp(gradient_of):
    """The VJP maker of a loss whose gradient with respect to its input, for an upstream
    gradient ``g`` (a scalar, or per element with reduction='none'), is
    ``gradient_of(input, target, *args)(g)``."""
    def vjp(ans, input, target, *args, **kwargs):
        return lambda g: _like(gradient_of(np.asarray(input), np.asarray(target), *args,
                                           **kwargs)(np.asarray(g)), input)
    return vjp


_define(losses.mse_loss, _loss_vjp(losses.mse_loss_gradient))
_define(losses.l1_loss, _loss_vjp(losses.l1_loss_gradient))
_define(losses.nll_loss, _loss_vjp(losses.nll_loss_gradient))
_define(losses.cross_entropy, _loss_vjp(losses.cross_entropy_gradient))
_define(losses.binary_cross_entropy, _loss_vjp(losses.binary_cross_entropy_gradient))
_define(losses.binary_cross_entropy_with_logits,
        _loss_vjp(losses.binary_cross_entropy_with_logits_gradient))
_define(losses.smooth_l1_loss, _loss_vjp(losses.smooth_l1_loss_gradient))


# --------------------------------------------------------------------------- more layers


def _pad_vjp(ans, input, pad, mode="constant", value=None):
    x = np.asarray(input)

    def vjp(g):
        # where each output value came from: the input's flat indices, padded alike
        # (-1 for a constant), each output's gradient added onto its source
        indices = np.arange(x.size, dtype=np.float64).reshape(x.shape)
        sources = padding.pad(indices, pad, mode, -1.0 if mode == "constant" else None)
        taken = sources >= 0
        return _like(np.bincount(sources[taken].astype(np.int64),
                                 weights=np.asarray(g, np.float64)[taken], minlength=x.size), x)
    return vjp


_define(padding.pad, _pad_vjp)


def _interpolate_vjp(ans, input, size=None, scale_factor=None, mode="nearest",
                     align_corners=None, recompute_scale_factor=None, antialias=False):
    x = np.asarray(input)
    in_sizes = x.shape[2:]
    out_sizes, scales = interpolation._output_sizes("interpolate", in_sizes, size,
                                                    scale_factor, recompute_scale_factor)

    def vjp(g):  # interpolation is linear, one axis after the other: each axis's transpose
        gradient = np.asarray(g, x.dtype)
        for axis, (n_in, n_out, scale) in enumerate(zip(in_sizes, out_sizes, scales)):
            matrix = interpolation.axis_matrix(x.dtype, n_in, n_out, scale, mode,
                                               align_corners)
            gradient = np.moveaxis(np.tensordot(gradient, matrix, axes=([2 + axis], [0])),
                                   -1, 2 + axis)
        return _like(gradient, x)
    return vjp


_define(interpolation.interpolate, _interpolate_vjp)


def _as_2d_pooling(x):
    """(N, C, L) or (C, L) as (N, C, 1, L): a 1-D pooling's gradient is the 2-D one's."""
    return x.reshape(x.shape[:-1] + (1, x.shape[-1]))


def _avg_pool1d_vjp(ans, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True):
    x = np.asarray(input)
    spec = pool_spec("avg_pool1d", x.shape, kernel_size, stride, padding, 1, ceil_mode)
    as_2d = _avg_pool2d_vjp(None, _as_2d_pooling(x), spec.kernel, spec.stride, spec.padding,
                            ceil_mode, count_include_pad)
    return lambda g: _like(as_2d(_as_2d_pooling(np.asarray(g))), x)


_define(pooling.avg_pool1d, _avg_pool1d_vjp)


def _adaptive_avg_pool1d_vjp(ans, input, output_size):
    x = np.asarray(input)
    size = np.shape(ans)[-1]
    as_2d = _adaptive_avg_pool2d_vjp(np.empty(x.shape[:-1] + (1, size)), _as_2d_pooling(x),
                                     (1, size))
    return lambda g: _like(as_2d(_as_2d_pooling(np.asarray(g))), x)


_define(pooling.adaptive_avg_pool1d, _adaptive_avg_pool1d_vjp)


def _gather_vjp(x, indices):
    """The gradient of taking x's values at ``indices`` (flat per (H, W) plane, of the
    output's shape): each output's gradient added onto the input value it took."""
    plane = x.shape[-1] * x.shape[-2]
    planes = x.size // plane if plane else 0

    def vjp(g):
        flat = (np.arange(planes)[:, None] * plane + indices.reshape(planes, -1)).ravel()
        summed = np.bincount(flat, weights=np.ravel(np.asarray(g, np.float64)),
                             minlength=planes * plane)
        return _like(summed, x)
    return vjp


def _adaptive_max_pool2d_vjp(ans, input, output_size, return_indices=False):
    x = np.asarray(input)
    _, indices = pooling.adaptive_max_pool2d(x, output_size, True)
    return _gather_vjp(x, indices)


_adaptive_max_traced = primitive(pooling.adaptive_max_pool2d.raw)
defvjp(_adaptive_max_traced, _adaptive_max_pool2d_vjp)


def _adaptive_max_pool2d_checked(input, output_size, return_indices=False):
    if return_indices:
        raise NotImplementedError("adaptive_max_pool2d: return_indices=True while a gradient "
                                  "is traced is not supported; call it without")
    return _adaptive_max_traced(input, output_size)


_PRIMITIVES["adaptive_max_pool2d"] = _adaptive_max_pool2d_checked


def _max_unpool2d_vjp(ans, input, indices, kernel_size, stride=None, padding=0,
                      output_size=None):
    x = np.asarray(input)
    flat = np.asarray(indices).reshape(-1, x.shape[-1] * x.shape[-2])

    def vjp(g):  # each input value went to one output position: its gradient comes back
        g = np.asarray(g)
        planes = g.reshape(flat.shape[0], g.shape[-1] * g.shape[-2])
        return _like(np.take_along_axis(planes, flat, axis=1), x)
    return vjp


_define(pooling.max_unpool2d, _max_unpool2d_vjp)


def _prelu_parts(input, weight):
    x, w = np.asarray(input), np.asarray(weight)
    channels = x.shape[1] if x.ndim >= 2 else 1
    shape = () if w.size == 1 else (1, channels) + (1,) * (x.ndim - 2)
    return x, w.reshape(shape)


def _prelu_input(ans, input, weight):
    x, slope = _prelu_parts(input, weight)
    return lambda g: _like(np.where(x > 0, g, g * slope), input)


def _prelu_weight(ans, input, weight):
    x, slope = _prelu_parts(input, weight)

    def vjp(g):
        contribution = np.where(x > 0, 0, np.asarray(g) * x)
        if np.ndim(slope) == 0:
            return _like(np.sum(contribution), weight)
        return _channel_sum(contribution, 1, weight)
    return vjp


_define(activations.prelu, _prelu_input, _prelu_weight)
