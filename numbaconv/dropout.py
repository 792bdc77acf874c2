"""Dropout with PyTorch's semantics: ``dropout`` and ``dropout2d``.

Training mode zeroes values (or whole channels) with probability ``p`` and scales the
rest by 1 / (1 - p), so that the expected output is the input; evaluation mode
(``training=False``) returns the input unchanged (a copy, or the input itself with
``inplace=True``). Masks come from ``rng`` (a ``numpy.random.Generator`` or an int
seed, numbaconv's addition to torch's arguments); without it, from numbaconv's default
generator, which ``numbaconv.manual_seed`` seeds.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from .activations import _in_place
from .devices import on_gpu_arrays
from .random import as_generator
from .spec import check_float_array
from .tracing import differentiable


def _probability(op: str, p) -> float:
    if not isinstance(p, numbers.Real) or isinstance(p, (bool, np.bool_)):
        raise TypeError(f"{op}: p must be a number, got {p!r}")
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


def _dropout(op, input, p, training, inplace, rng, mask_shape):
    x = check_float_array(op, "input", input)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: training must be a bool, got {training!r}")
    if not training or p == 0.0:
        return _in_place(op, input, x.copy(), inplace)
    if p == 1.0:
        return _in_place(op, input, np.zeros_like(x), inplace)
    keep = as_generator(rng).random(mask_shape(x)) >= p
    # x times a mask of 0 and 1 / (1 - p), as torch computes it (a dropped NaN stays NaN).
    mask = np.where(keep, x.dtype.type(1.0 / (1.0 - p)), x.dtype.type(0))
    with np.errstate(invalid="ignore"):  # inf * 0
        return _in_place(op, input, x * mask, inplace)


@differentiable
@on_gpu_arrays
def dropout(input, p=0.5, training=True, inplace=False, *, rng=None):
    """Zero each value with probability ``p`` and scale the others by 1 / (1 - p), as
    ``torch.nn.functional.dropout`` (note: ``training`` defaults to True, as in torch).

    >>> import numpy as np, numbaconv
    >>> y = numbaconv.dropout(np.ones(10000), 0.2, rng=0)
    >>> sorted(set(y.tolist())), round(float((y == 0).mean()), 2)
    ([0.0, 1.25], 0.2)
    """
    p = _probability("dropout", p)
    return _dropout("dropout", input, p, training, inplace, rng, lambda x: x.shape)


@differentiable
@on_gpu_arrays
def dropout2d(input, p=0.5, training=True, inplace=False, *, rng=None):
    """Zero whole channels with probability ``p`` (one draw per (n, c) of an (N, C, H, W)
    input), scaling the others by 1 / (1 - p), as ``torch.nn.functional.dropout2d``.

    As torch (and with its warnings): a 3-D input is read as (N, C, L), channel-wise, not
    as an unbatched (C, H, W); inputs of other ranks drop along their first two axes.
    """
    op = "dropout2d"
    p = _probability(op, p)
    x = check_float_array(op, "input", input)
    if x.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {x.ndim}-D input to dropout2d, which is "
                      f"deprecated and will result in an error in a future release. To retain "
                      f"the behavior and silence this warning, please use dropout instead.",
                      stacklevel=2)
    if x.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that "
                      "channel-wise 1D dropout behavior is desired - input is interpreted as "
                      "shape (N, C, L), where C is the channel dim.", stacklevel=2)
    if x.ndim < 2:
        raise ValueError(f"{op}: expected an input with at least 2 dimensions, got shape "
                         f"{x.shape}")
    return _dropout(op, input, p, training, inplace, rng,
                    lambda a: a.shape[:2] + (1,) * (a.ndim - 2))
