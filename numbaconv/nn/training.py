"""``value_and_grad``: a model's loss and its gradients with respect to every parameter.

>>> import numpy as np
>>> from numbaconv import nn
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
>>> x, y = np.ones((2, 1, 8, 8), np.float32), np.array([0, 2])
>>> loss, grads = nn.value_and_grad(model, nn.CrossEntropyLoss())(x, y)
>>> sorted(grads) == sorted(name for name, _ in model.named_parameters())
True
>>> grads["0.weight"].shape
(4, 1, 3, 3)

The gradients are traced by ``autograd`` (``pip install numbaconv[train]``; why, see
:mod:`numbaconv.autodiff`). Inside ``forward``, numbaconv's functions and modules,
Python arithmetic (``a + b``, ``a * b``), indexing, ``.reshape`` and ``autograd.numpy``'s
functions (``anp.concatenate``) are followed; a NumPy function applied to a traced value,
or a numbaconv function without a gradient, raises instead of giving a wrong gradient.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import config
from ..cpu import step_columns
from .module import Module


class Gradients(dict):
    """{parameter name: gradient}, in ``named_parameters()`` order; it also knows which
    parameter array each gradient belongs to, so that an optimiser built from
    ``model.parameters()`` finds them (``optim.Optimizer.step``)."""

    def __init__(self, names, arrays, gradients):
        super().__init__(zip(names, gradients))
        self.by_array = {id(a): g for a, g in zip(arrays, gradients)}


def _autograd():
    try:
        import autograd
    except ImportError:
        raise ImportError("numbaconv.nn.value_and_grad traces gradients with the autograd "
                          "package: pip install 'numbaconv[train]' (or pip install autograd)"
                          ) from None
    from .. import autodiff  # noqa: F401  (defines numbaconv's primitives)
    return autograd


@contextlib.contextmanager
def _parameters_replaced(entries, originals, values):
    """Each (module, name) parameter replaced by the matching value (autograd's boxes)
    for the duration, then restored to ``originals``."""
    for (module, name), value in zip(entries, values):
        module.__dict__["_parameters"][name] = value
    try:
        yield
    finally:
        for (module, name), original in zip(entries, originals):
            module.__dict__["_parameters"][name] = original


def value_and_grad(model: Module, loss_fn):
    """A function of the model's inputs and the loss's targets, ``f(x, *targets)``, that
    runs ``loss_fn(model(x), *targets)`` and returns (loss, gradients): the loss as a NumPy
    scalar, the gradients as {name: array} with the keys of ``model.named_parameters()``
    (a :class:`Gradients`). The model runs in the mode it is in: call ``model.train()``
    first for BatchNorm's batch statistics (and their running averages) and Dropout.
    Parameters are not changed; an optimiser's ``step(grads)`` does that."""
    if not isinstance(model, Module):
        raise TypeError(f"value_and_grad: model must be a numbaconv.nn.Module, got "
                        f"{type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"value_and_grad: loss_fn must be callable, got {loss_fn!r}")
    _autograd()  # (imported, with numbaconv's primitives, before the first call)

    def compute(input, *targets):
        entries, names, arrays = [], [], []
        for prefix, module in model.named_modules():
            for name, value in module.__dict__["_parameters"].items():
                if value is not None:
                    entries.append((module, name))
                    names.append(f"{prefix}.{name}" if prefix else name)
                    arrays.append(value)
        if not arrays:
            raise ValueError("value_and_grad: the model has no parameters")

        def objective(values):
            with _parameters_replaced(entries, arrays, values):
                loss = loss_fn(model(input), *targets)
            if np.ndim(loss) != 0:
                raise ValueError(f"value_and_grad: the loss must be a scalar, got shape "
                                 f"{np.shape(loss)} (reduction='none'?)")
            return loss

        # Every step's weights are new: nothing to cache; what the forward pass made of
        # its inputs (im2col matrices, Winograd's tiles, padded copies) is kept for the
        # weight gradients that would make it again (cpu.step_columns).
        with config.fresh_weights(), step_columns.kept():
            loss, gradients = _value_and_gradients(objective, arrays)
        gradients = [np.asarray(g, dtype=a.dtype).reshape(a.shape)
                     for g, a in zip(gradients, arrays)]
        return np.asarray(loss)[()], Gradients(names, arrays, gradients)

    return compute


def _value_and_gradients(objective, arrays):
    """(objective(boxes), the gradient for each of ``arrays``): autograd's
    ``value_and_grad`` with one traced start per parameter. Traced as one list, each
    parameter taken out of it cost the whole list's vector space in the backward pass and
    a zero array for every parameter (a ResNet-18's 62 parameters: ~3,800 vector spaces
    and 44 MB of zeros a step); so the trace starts at each array and the backward pass is
    autograd's own loop, collecting what reaches each start."""
    from autograd.core import VJPNode, add_outgrads, vspace
    from autograd.tracer import isbox, new_box, toposort, trace_stack

    starts = [VJPNode.new_root() for _ in arrays]
    with trace_stack.new_trace() as trace:
        end = objective([new_box(a, trace, node) for a, node in zip(arrays, starts)])
        if not (isbox(end) and end._trace == trace):  # the loss ignores the parameters
            return end, [np.zeros_like(a) for a in arrays]
        value, end_node = end._value, end._node
    step_columns.stop_keeping()  # (the backward pass's convolutions feed no weight gradient)
    reached = {}
    index = {node: i for i, node in enumerate(starts)}
    outgrads = {end_node: (vspace(value).ones(), False)}
    for node in toposort(end_node):
        outgrad = outgrads.pop(node)
        if node in index:
            reached[index[node]] = outgrad[0]
            continue
        for parent, ingrad in zip(node.parents, node.vjp(outgrad[0])):
            outgrads[parent] = add_outgrads(outgrads.get(parent), ingrad)
    return value, [reached[i] if i in reached else np.zeros_like(a)
                   for i, a in enumerate(arrays)]
