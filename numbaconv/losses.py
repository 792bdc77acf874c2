"""Loss functions with torch.nn.functional's names, arguments and semantics, and their
gradients with respect to the input (``*_gradient``, what :mod:`numbaconv.autodiff`
traces with).

``reduction`` is 'mean' (default), 'sum' or 'none'. Classification losses take the class
axis second, as torch: input (N, C) or (N, C, d1, ...), or unbatched (C,); class-index
targets are integers of shape (N,) or (N, d1, ...).
"""

from __future__ import annotations

import numpy as np

from .activations import log_softmax
from .spec import check_float_array
from .tracing import differentiable

REDUCTIONS = ("mean", "sum", "none")


def _reduction(op: str, reduction) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(values, reduction, count=None):
    if reduction == "none":
        return values
    total = values.sum(dtype=values.dtype)
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):  # nothing counted: NaN, as torch
        return (total / (values.size if count is None else count)).astype(values.dtype)


def _pair(op: str, input, target):
    x = check_float_array(op, "input", input)
    t = check_float_array(op, "target", target)
    if x.shape != t.shape:
        raise ValueError(f"{op}: target shape {t.shape} must equal the input shape {x.shape} "
                         f"(numbaconv does not broadcast them)")
    dtype = np.result_type(x, t)
    return x.astype(dtype, copy=False), t.astype(dtype, copy=False)


def _upstream(g, reduction, size, dtype):
    """The loss's upstream gradient as a per-element factor."""
    g = np.asarray(g, dtype)
    return g / dtype.type(size) if reduction == "mean" else g


@differentiable
def mse_loss(input, target, reduction="mean"):
    """Mean squared error, as ``torch.nn.functional.mse_loss``: (input - target)^2, reduced.

    >>> import numpy as np, numbaconv
    >>> float(numbaconv.mse_loss(np.array([1.0, 2.0]), np.array([0.0, 0.0])))
    2.5
    """
    reduction = _reduction("mse_loss", reduction)
    x, t = _pair("mse_loss", input, target)
    return _reduce((x - t) ** 2, reduction)


def mse_loss_gradient(input, target, reduction="mean"):
    x, t = _pair("mse_loss", input, target)
    return lambda g: 2 * (x - t) * _upstream(g, reduction, x.size, x.dtype)


@differentiable
def l1_loss(input, target, reduction="mean"):
    """Mean absolute error, as ``torch.nn.functional.l1_loss``: |input - target|, reduced."""
    reduction = _reduction("l1_loss", reduction)
    x, t = _pair("l1_loss", input, target)
    return _reduce(np.abs(x - t), reduction)


def l1_loss_gradient(input, target, reduction="mean"):
    x, t = _pair("l1_loss", input, target)
    return lambda g: np.sign(x - t) * _upstream(g, reduction, x.size, x.dtype)


def _class_weights(op: str, weight, classes: int, dtype):
    if weight is None:
        return np.ones(classes, dtype)
    w = check_float_array(op, "weight", weight)
    if w.shape != (classes,):
        raise ValueError(f"{op}: weight must have one value per class, shape ({classes},), "
                         f"got {w.shape}")
    return w.astype(dtype, copy=False)


def _class_axis(op: str, x):
    """The input viewed as (N, C, positions) and whether it was unbatched."""
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have a class axis, got a 0-d input")
    if x.ndim == 1:
        return x.reshape(1, x.shape[0], 1), True
    return x.reshape(x.shape[0], x.shape[1], -1), False


def _class_targets(op: str, target, x, ignore_index):
    """Integer targets of the input's shape without its class axis, checked."""
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"{op}: class-index targets must be integers, got dtype {t.dtype} "
                        f"(float targets of the input's shape are class probabilities)")
    expected = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if t.shape != expected:
        raise ValueError(f"{op}: expected target of shape {expected} for input of shape "
                         f"{x.shape}, got {t.shape}")
    classes = x.shape[1] if x.ndim > 1 else x.shape[0]
    bad = (t != ignore_index) & ((t < 0) | (t >= classes))
    if bad.any():
        raise ValueError(f"{op}: target {int(t[bad].flat[0])} is out of bounds for "
                         f"{classes} classes")
    return t


def _weight_matrix(op, input, target, weight, ignore_index, label_smoothing):
    """(x (N, C, P), A (N, C, P), denominator, unbatched): the loss is -sum(A * log p) per
    position, A the weight each class's log-probability gets (zero at ignored positions),
    and 'mean' divides the total by the denominator (torch's rules, below)."""
    x = check_float_array(op, "input", input)
    x3, unbatched = _class_axis(op, x)
    n, classes, positions = x3.shape
    w = _class_weights(op, weight, classes, x.dtype)
    if np.issubdtype(np.asarray(target).dtype, np.floating):  # class probabilities
        t = check_float_array(op, "target", target)
        if t.shape != x.shape:
            raise ValueError(f"{op}: probability targets must have the input's shape "
                             f"{x.shape}, got {t.shape}")
        t3 = t.astype(x.dtype, copy=False).reshape(x3.shape)
        if label_smoothing:
            t3 = t3 * (1 - label_smoothing) + label_smoothing / classes
        return x3, w[None, :, None] * t3, n * positions, unbatched
    t = _class_targets(op, target, x, ignore_index).reshape(n, positions)
    kept = t != ignore_index
    picked = np.where(kept, t, 0)
    a = np.zeros(x3.shape, x.dtype)
    rows, cols = np.nonzero(kept)
    a[rows, picked[rows, cols], cols] = (1 - label_smoothing) * w[picked[rows, cols]]
    denominator = w[picked][kept].sum()
    if label_smoothing:  # every class's log-probability, weighted, over C
        a += (label_smoothing / classes) * w[None, :, None] * kept[:, None, :]
    return x3, a, denominator, unbatched


@differentiable
def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross entropy of logits and class targets, as ``torch.nn.functional.cross_entropy``:
    log_softmax over the class axis, then the negative log-likelihood of the target
    class (class indices) or of the target distribution (float probabilities of the
    input's shape), with class ``weight``, ``ignore_index`` and ``label_smoothing`` (the
    target mixed with the uniform distribution). 'mean' divides by the summed weights of
    the counted targets (class indices) or by the number of positions (probabilities).

    >>> import numpy as np, numbaconv
    >>> logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    >>> round(float(numbaconv.cross_entropy(logits, np.array([0, 0]))), 4)
    1.1269
    """
    op = "cross_entropy"
    reduction = _reduction(op, reduction)
    smoothing = _smoothing(op, label_smoothing)
    x3, a, denominator, unbatched = _weight_matrix(op, input, target, weight, ignore_index,
                                                   smoothing)
    log_p = log_softmax(x3, dim=1)
    return _per_position_loss(-(a * log_p).sum(axis=1), input, unbatched, reduction,
                              denominator)


def _per_position_loss(per_position, input, unbatched, reduction, denominator):
    """A classification loss from its (N, P) values: reduced, or in the input's shape
    without its class axis (reduction='none')."""
    if reduction == "none":
        x = np.asarray(input)
        return per_position.reshape(() if unbatched else x.shape[:1] + x.shape[2:])
    return _reduce(per_position, reduction, denominator)


def cross_entropy_gradient(input, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0):
    op = "cross_entropy"
    x3, a, denominator, _ = _weight_matrix(op, input, target, weight, ignore_index,
                                           _smoothing(op, label_smoothing))
    p = np.exp(log_softmax(x3, dim=1))
    # d/dx of -sum_c a_c log p_c is p * sum_c a_c - a.
    local = p * a.sum(axis=1, keepdims=True) - a

    return lambda g: (local * _upstream_per_position(g, reduction, denominator, x3)).reshape(
        np.shape(input))


def _upstream_per_position(g, reduction, denominator, x3):
    """A classification loss's upstream gradient as a factor of each (N, 1, P) position."""
    g = np.asarray(g, x3.dtype)
    if reduction == "none":
        return g.reshape(x3.shape[0], 1, x3.shape[2])
    return g / denominator if reduction == "mean" else g


def _smoothing(op: str, label_smoothing) -> float:
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got "
                         f"{label_smoothing}")
    return float(label_smoothing)


@differentiable
def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``:
    -weight[t] * input[t] per position, 'mean' dividing by the summed weights of the
    counted targets."""
    op = "nll_loss"
    reduction = _reduction(op, reduction)
    x3, a, denominator, unbatched = _weight_matrix(op, input, target, weight, ignore_index,
                                                   0.0)
    return _per_position_loss(-(a * x3).sum(axis=1), input, unbatched, reduction,
                              denominator)


def nll_loss_gradient(input, target, weight=None, ignore_index=-100, reduction="mean"):
    x3, a, denominator, _ = _weight_matrix("nll_loss", input, target, weight, ignore_index,
                                           0.0)

    return lambda g: (-a * _upstream_per_position(g, reduction, denominator, x3)).reshape(
        np.shape(input))


def _element_weight(op: str, weight, shape, dtype):
    if weight is None:
        return None
    w = check_float_array(op, "weight", weight).astype(dtype, copy=False)
    if np.broadcast_shapes(w.shape, shape) != shape:
        raise ValueError(f"{op}: weight of shape {w.shape} does not broadcast to the input's "
                         f"shape {shape}")
    return w


@differentiable
def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``:
    -weight * (t * log(x) + (1 - t) * log(1 - x)), each log clamped at -100 as torch does;
    the input must lie in [0, 1].

    >>> import numpy as np, numbaconv
    >>> round(float(numbaconv.binary_cross_entropy(np.array([0.8]), np.array([1.0]))), 4)
    0.2231
    """
    op = "binary_cross_entropy"
    reduction = _reduction(op, reduction)
    x, t = _pair(op, input, target)
    if x.size and not ((x >= 0) & (x <= 1)).all():
        raise ValueError(f"{op}: all elements of input should be between 0 and 1")
    w = _element_weight(op, weight, x.shape, x.dtype)
    with np.errstate(divide="ignore"):
        loss = -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log1p(-x), -100))
    return _reduce(loss if w is None else loss * w, reduction)


def binary_cross_entropy_gradient(input, target, weight=None, reduction="mean"):
    x, t = _pair("binary_cross_entropy", input, target)
    w = _element_weight("binary_cross_entropy", weight, x.shape, x.dtype)
    # torch's: (x - t) / max((1 - x) * x, 1e-12)
    local = (x - t) / np.maximum((1 - x) * x, x.dtype.type(1e-12))
    local = local if w is None else local * w
    return lambda g: local * _upstream(g, reduction, x.size, x.dtype)


@differentiable
def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """Binary cross entropy of logits, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``: sigmoid and the loss in one
    stable expression, (1 - t) * x + (1 + (pos_weight - 1) * t) * log(1 + exp(-x)),
    times ``weight``; ``pos_weight`` (broadcast along the last axis) weighs the positives."""
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction(op, reduction)
    x, t = _pair(op, input, target)
    w = _element_weight(op, weight, x.shape, x.dtype)
    log_weight = _log_weight(op, pos_weight, t, x.shape)
    softplus = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)  # log(1 + exp(-x)), stably
    loss = (1 - t) * x + log_weight * softplus
    return _reduce(loss if w is None else loss * w, reduction)


def _log_weight(op, pos_weight, t, shape):
    if pos_weight is None:
        return 1
    p = check_float_array(op, "pos_weight", pos_weight).astype(t.dtype, copy=False)
    if np.broadcast_shapes(p.shape, shape) != shape:
        raise ValueError(f"{op}: pos_weight of shape {p.shape} does not broadcast to the "
                         f"input's shape {shape}")
    return 1 + (p - 1) * t


def binary_cross_entropy_with_logits_gradient(input, target, weight=None, reduction="mean",
                                              pos_weight=None):
    op = "binary_cross_entropy_with_logits"
    x, t = _pair(op, input, target)
    w = _element_weight(op, weight, x.shape, x.dtype)
    from .activations import sigmoid

    # d/dx of (1 - t) x + lw * log(1 + exp(-x)) is (1 - t) - lw * (1 - sigmoid(x))
    local = (1 - t) - _log_weight(op, pos_weight, t, x.shape) * (1 - sigmoid(x))
    local = local if w is None else local * w
    return lambda g: local * _upstream(g, reduction, x.size, x.dtype)


@differentiable
def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Smooth L1 loss, as ``torch.nn.functional.smooth_l1_loss``: 0.5 * d^2 / beta where
    |d| < beta, |d| - 0.5 * beta elsewhere (d = input - target; beta 0 gives L1)."""
    op = "smooth_l1_loss"
    reduction = _reduction(op, reduction)
    beta = _beta(op, beta)
    x, t = _pair(op, input, target)
    d = np.abs(x - t)
    if beta == 0:
        return _reduce(d, reduction)
    return _reduce(np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta).astype(x.dtype),
                   reduction)


def _beta(op, beta) -> float:
    if float(beta) < 0:
        raise ValueError(f"{op}: beta must be non-negative, got {beta}")
    return float(beta)


def smooth_l1_loss_gradient(input, target, reduction="mean", beta=1.0):
    x, t = _pair("smooth_l1_loss", input, target)
    beta = _beta("smooth_l1_loss", beta)
    d = x - t
    local = np.sign(d) if beta == 0 else np.where(np.abs(d) < beta, d / beta, np.sign(d))
    return lambda g: local.astype(x.dtype) * _upstream(g, reduction, x.size, x.dtype)
