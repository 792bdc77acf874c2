"""What a training step's forward pass made of its inputs, kept for its weight gradients.

A layer that the GEMM algorithm runs as one product over its whole im2col matrix
(``im2col_whole``) unfolds its input in the forward pass, and its weight gradient, the
product of the output gradient with that same matrix, used to unfold it again: in a
ResNet-18 step at batch 8 on 64x64 images, 2 ms of 60 went to unfolding twice. Inside a
:func:`kept` block (``nn.value_and_grad`` opens one per step) the forward pass unfolds
into an array of its own, kept under its input's memory, and the weight gradient takes it
(:func:`take`) instead of unfolding again. So do two other kinds: Winograd F(4x4)'s
transformed input tiles (``"winograd"``) where the weight gradient is ``weight_winograd``,
which transforms the same tiles (36 x 128 tiles x 64 channels for ResNet's 64 -> 64 on
16x16 at batch 8, 0.3 ms a layer in a step), and the padded, phase-split copy of the
input direct's register tiles read (``"phase_split"``) where the weight gradient reads
the same copy.

The input array is kept with its matrix, so that its memory cannot be handed to another
array while the entry lives, and an entry matches only the same kind, memory, shape,
strides and dtype under the same convolution. Only arrays up to MAX_BYTES, and up to
BUDGET_BYTES of them in all, are kept; the block's end drops whatever was not taken.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .. import array_pool

#: The largest matrix kept, and the most kept at once (a step's forward pass keeps one per
#: such layer until its backward pass takes it).
MAX_BYTES = 32 << 20
BUDGET_BYTES = 256 << 20

_state = threading.local()


class kept:
    """A block (``with kept():``) in which forward passes keep what their weight gradients
    would make again, for :func:`take` (on this thread), until :func:`stop_keeping` (the
    backward pass's convolutions, the input gradients, have no weight gradient to keep
    anything for). Blocks do not nest: an inner one leaves the outer's entries alone."""

    def __enter__(self):
        self._outer = getattr(_state, "entries", None)
        if self._outer is None:
            _state.entries, _state.bytes, _state.keeping = {}, 0, True

    def __exit__(self, *exc):
        if self._outer is None:
            _state.entries = None


def keeping() -> bool:
    """Whether forward passes on this thread keep what they make now: a cheap test for
    the callers to make before they ask the registry whether a layer's weight gradient
    would take it (which inference calls need not pay)."""
    return getattr(_state, "entries", None) is not None and _state.keeping


def stop_keeping() -> None:
    """From now on in this :class:`kept` block, keep nothing more (what is kept stays
    for :func:`take`)."""
    _state.keeping = False


def _key(x: np.ndarray, spec, kind: str) -> tuple:
    """The input's memory and layout, what the forward pass made of it (``kind``), and
    what that read of it (the forward pass's spec has a bias, the weight gradient's
    none)."""
    return (kind, x.__array_interface__["data"][0], x.shape, x.strides, x.dtype.str,
            spec.in_channels, spec.out_channels, spec.kernel_height, spec.kernel_width,
            spec.stride_h, spec.stride_w, spec.dilation_h, spec.dilation_w, spec.pad_top,
            spec.pad_bottom, spec.pad_left, spec.pad_right, spec.groups)


def columns_for(x: np.ndarray, spec, shape: tuple, kind: str = "im2col"):
    """A new array of ``shape`` for the im2col matrix of ``x`` under ``spec`` (or another
    ``kind`` of transformed input: Winograd's ``"winograd"`` tiles), kept for
    :func:`take`, inside a :class:`kept` block and within the budget; else None."""
    if not keeping():
        return None
    entries = _state.entries
    nbytes = math.prod(shape) * x.dtype.itemsize
    if nbytes > MAX_BYTES or _state.bytes + nbytes > BUDGET_BYTES:
        return None
    key = _key(x, spec, kind)
    if key in entries:  # the same input again (a layer run twice): the first stays
        return None
    columns = array_pool.empty(shape, x.dtype)
    entries[key] = (x, columns)
    _state.bytes += nbytes
    return columns


def take(x: np.ndarray, spec, kind: str = "im2col"):
    """The kept im2col matrix (or other ``kind``) of ``x`` under ``spec`` (taken: a second
    call gets None), or None."""
    entries = getattr(_state, "entries", None)
    if not entries:
        return None
    found = entries.pop(_key(x, spec, kind), None)
    if found is None:
        return None
    _state.bytes -= found[1].nbytes
    return found[1]
