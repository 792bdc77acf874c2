"""Shared checking logic: numbaconv vs the NumPy reference vs torch."""

import numpy as np

import numbaconv
import reference
from torch_oracle import torch_conv

#: max |out - ref| / max(1, max |ref|) allowed per (algorithm family, dtype).
TOLERANCE = {"float32": 2e-5, "float64": 1e-12}
WINOGRAD_TOLERANCE = {"float32": 2e-4, "float64": 1e-10}


def as_pairs(padding, kernel, dilation, nsp):
    """torch-style padding -> ((before, after), ...) for the reference."""
    if padding == "same":
        return reference.same_padding(kernel, dilation)
    if padding == "valid":
        return ((0, 0),) * nsp
    if isinstance(padding, int):
        return ((padding, padding),) * nsp
    padding = tuple(padding) * (nsp if len(padding) == 1 else 1)
    return tuple((p, p) for p in padding)


def as_tuple(value, nsp):
    if isinstance(value, int):
        return (value,) * nsp
    return tuple(value) * (nsp if len(value) == 1 else 1)


def reference_conv(op, x, w, b, stride, padding, dilation, groups, padding_mode):
    """The NumPy oracle on torch-style arguments (batched or not)."""
    nsp = 1 if op == "conv1d" else 2
    x = np.asarray(x)
    batched = x.ndim == nsp + 2
    xb = x if batched else x[None]
    w = np.asarray(w)
    kernel = w.shape[2:]
    dil = as_tuple(dilation, nsp)
    pads = as_pairs(padding, kernel, dil, nsp)
    if nsp == 1:
        out = reference.conv1d(xb, w, b, as_tuple(stride, 1)[0], pads[0], dil[0], groups,
                               padding_mode)
    else:
        out = reference.conv2d(xb, w, b, as_tuple(stride, 2), pads, dil, groups, padding_mode)
    return out if batched else out[0]


def relative_error(out, ref):
    if out.size == 0:
        return 0.0
    return float(np.max(np.abs(out - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def check_conv(op, x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
               padding_mode="zeros", algorithm="auto", torch=None, tolerance=None):
    """Run numbaconv and compare it with the reference (and torch when given)."""
    fn = numbaconv.conv1d if op == "conv1d" else numbaconv.conv2d
    out = fn(x, w, b, stride, padding, dilation, groups, padding_mode, algorithm=algorithm)
    dtype = np.result_type(*[np.asarray(a) for a in (x, w) + (() if b is None else (b,))])
    assert out.dtype == dtype
    if tolerance is None:
        used = numbaconv.plan(x, w, b, stride, padding, dilation, groups, padding_mode,
                              algorithm=algorithm).algorithm
        table = WINOGRAD_TOLERANCE if used.startswith("winograd") else TOLERANCE
        tolerance = table[dtype.name]
    ref = reference_conv(op, x, w, b, stride, padding, dilation, groups, padding_mode)
    assert out.shape == ref.shape
    assert relative_error(out, ref) <= tolerance, relative_error(out, ref)
    if torch is not None:
        expected = torch_conv(torch, op, x, w, b, stride, padding, dilation, groups, padding_mode)
        assert not isinstance(expected, Exception), f"torch rejected what numbaconv ran: {expected}"
        assert out.shape == expected.shape
        assert relative_error(out, expected) <= max(tolerance, TOLERANCE[dtype.name])
    return out
