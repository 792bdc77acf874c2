"""``pad`` with PyTorch's semantics (``torch.nn.functional.pad``), for NumPy arrays."""

from __future__ import annotations

import numbers

import numpy as np

from .devices import on_gpu_arrays
from .spec import _is_int, check_float_array
from .tracing import differentiable

PAD_MODES = ("constant", "reflect", "replicate", "circular")
_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@differentiable
@on_gpu_arrays
def pad(input, pad, mode="constant", value=None):
    """Pad (or, with negative amounts, crop) the last axes of ``input``, as
    ``torch.nn.functional.pad``.

    ``pad`` lists (before, after) amounts from the last axis backwards: ``(1, 2)`` pads the
    last axis with 1 value before and 2 after; ``(1, 1, 2, 2)`` pads the last two. Modes:

    * ``'constant'``: ``value`` (default 0) on any number of axes; a negative amount crops.
    * ``'reflect'``: the input mirrored without repeating its edge (amounts smaller than
      the axis), ``'replicate'``: the edge value repeated, ``'circular'``: the input
      wrapped around (amounts at most the axis). These pad the last 1, 2 or 3 axes of an
      input with 1 or 2 more axes (as torch: (C, W) or (N, C, W) for a 2-value ``pad``...)
      and take no ``value``. Negative amounts crop, as in torch (circular mode crops first,
      then wraps the cropped array).

    >>> import numpy as np, numbaconv
    >>> x = np.arange(4.0).reshape(1, 4)
    >>> numbaconv.pad(x, (2, 1), mode="reflect")
    array([[2., 1., 0., 1., 2., 3., 2.]])
    >>> numbaconv.pad(x, (1, -2), value=9.0)
    array([[9., 0., 1.]])
    """
    op = "pad"
    x = check_float_array(op, "input", input)
    amounts = _amounts(op, pad, x.ndim)
    if mode not in PAD_MODES:
        raise ValueError(f"{op}: mode must be one of {PAD_MODES}, got mode={mode!r}")
    axes = len(amounts)
    # widths[axis] = (before, after) for every axis, the padded ones last.
    widths = [(0, 0)] * (x.ndim - axes) + amounts[::-1]
    if mode == "constant":
        if value is not None and (not isinstance(value, numbers.Real)
                                  or isinstance(value, (bool, np.bool_))):
            raise TypeError(f"{op}: value must be a number, got {value!r}")
        fill = 0.0 if value is None else float(value)
        out = np.pad(x, [(max(a, 0), max(b, 0)) for a, b in widths], constant_values=fill)
        return np.ascontiguousarray(out[_crops(widths, out.shape)])
    if value is not None:
        raise ValueError(f'{op}: Padding mode "{mode}" doesn\'t take in value argument')
    check_mode_dims(op, x.ndim, axes, mode)
    sizes = x.shape[x.ndim - axes:]
    if mode == "circular":
        cropped = x[_crops(widths, x.shape, negative_only=True)]
        for (before, after), size in zip(amounts[::-1], cropped.shape[x.ndim - axes:]):
            if max(before, after) > size:
                raise ValueError(f"{op}: mode='circular' pads by at most the (cropped) axis "
                                 f"size ({size}), got {(before, after)}: padding value "
                                 f"causes wrapping around more than once")
        out = np.pad(cropped, [(max(a, 0), max(b, 0)) for a, b in widths], mode="wrap")
        return np.ascontiguousarray(out)
    for (before, after), size in zip(amounts[::-1], sizes):
        if mode == "reflect" and max(before, after) >= size:
            raise ValueError(f"{op}: mode='reflect' needs each amount smaller than the axis "
                             f"it pads ({size}), got {(before, after)}")
        if mode == "replicate" and size == 0 and max(before, after) > 0:
            raise ValueError(f"{op}: mode='replicate' cannot pad an empty axis")
    out = np.pad(x, [(max(a, 0), max(b, 0)) for a, b in widths], mode=_NUMPY_MODE[mode])
    return np.ascontiguousarray(out[_crops(widths, out.shape)])


def check_mode_dims(op: str, ndim: int, axes: int, mode: str) -> None:
    """torch's rule for the non-constant modes: the last 1, 2 or 3 axes of an input with
    1 or 2 more."""
    if ndim not in (axes + 1, axes + 2) or axes > 3:
        raise ValueError(
            f"{op}: padding size {2 * axes} is not supported for a {ndim}-D input with "
            f"mode={mode!r}: non-constant modes pad the last 1, 2 or 3 axes (pad of 2, 4 or "
            f"6 values) of an input with 1 or 2 more axes")


def _amounts(op: str, pad, ndim: int) -> list:
    """[(before, after) of the last axis, of the one before, ...] from torch's flat pad."""
    try:
        values = list(pad)
    except TypeError:
        raise TypeError(f"{op}: pad must be a sequence of ints, got {pad!r}") from None
    if not all(_is_int(v) for v in values):
        raise TypeError(f"{op}: pad must be a sequence of ints, got {pad!r}")
    if len(values) % 2:
        raise ValueError(f"{op}: Padding length must be divisible by 2, got {len(values)}")
    if len(values) > 2 * ndim:
        raise ValueError(f"{op}: Padding length should be less than or equal to two times "
                         f"the input dimension but got padding length {len(values)} and "
                         f"input of dimension {ndim}")
    return [(int(values[i]), int(values[i + 1])) for i in range(0, len(values), 2)]


def _crops(widths, shape, negative_only: bool = False) -> tuple:
    """The slices that remove what negative amounts crop (after padding the positive
    ones, or from the input itself with ``negative_only``)."""
    index = []
    for (before, after), size in zip(widths, shape):
        start = -before if before < 0 else 0
        stop = size + after if after < 0 else size
        if start > stop:
            raise ValueError(f"pad: negative padding {(before, after)} crops more than the "
                             f"axis holds ({size})")
        index.append(slice(start, stop))
    return tuple(index)
