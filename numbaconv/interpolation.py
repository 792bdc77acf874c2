"""``interpolate`` with PyTorch's semantics (``torch.nn.functional.interpolate``).

Modes ``'nearest'``, ``'nearest-exact'``, ``'linear'`` (3-D input) and ``'bilinear'``
(4-D input). Source positions are computed as torch computes them, in the input's dtype
(float32 arithmetic for float32 arrays, so that 'nearest' picks the same pixels): output
index d reads source coordinate

* nearest: floor(d * scale), nearest-exact: floor((d + 0.5) * scale), capped at in - 1;
* linear, ``align_corners=False``: (d + 0.5) * scale - 0.5, at least 0;
  ``align_corners=True``: d * (in - 1) / (out - 1),

where scale = in / out, or 1 / scale_factor when ``scale_factor`` is given (unless
``recompute_scale_factor=True``). Linear modes weigh the two neighbours of that
coordinate, one axis after the other.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .spec import _is_int, check_float_array
from .devices import on_gpu_arrays
from .tracing import differentiable

MODES = ("nearest", "nearest-exact", "linear", "bilinear")
_TORCH_ONLY = ("bicubic", "trilinear", "area")
_LINEAR_DIMS = {"linear": 1, "bilinear": 2}


@differentiable
@on_gpu_arrays
def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial axes of ``input`` (N, C, L) or (N, C, H, W), as
    ``torch.nn.functional.interpolate``: to ``size`` (an int or one per axis) or by
    ``scale_factor`` (a number or one per axis; output size floor(in * scale_factor)).

    >>> import numpy as np, numbaconv
    >>> x = np.array([[[[0.0, 2.0], [4.0, 6.0]]]])
    >>> numbaconv.interpolate(x, scale_factor=2, mode="nearest")[0, 0]
    array([[0., 0., 2., 2.],
           [0., 0., 2., 2.],
           [4., 4., 6., 6.],
           [4., 4., 6., 6.]])
    >>> numbaconv.interpolate(x, size=3, mode="bilinear", align_corners=True)[0, 0]
    array([[0., 1., 2.],
           [2., 3., 4.],
           [4., 5., 6.]])
    """
    op = "interpolate"
    x = check_float_array(op, "input", input)
    out = x
    for axis, (low, high, weight) in enumerate(resize_sources(
            op, x.shape, x.dtype, size, scale_factor, mode, align_corners,
            recompute_scale_factor, antialias)):
        if weight is None:
            out = np.take(out, low, axis=2 + axis)
            continue
        shape = [1] * x.ndim
        shape[2 + axis] = len(low)
        weight = weight.reshape(shape)
        out = (np.take(out, low, axis=2 + axis) * (1 - weight)
               + np.take(out, high, axis=2 + axis) * weight)
    return np.ascontiguousarray(out, dtype=x.dtype)


def resize_sources(op, shape, dtype, size, scale_factor, mode, align_corners,
                   recompute_scale_factor, antialias) -> list:
    """The arguments checked as torch checks them, then per spatial axis (low, high,
    weight) (:func:`axis_sources`); the GPU's interpolate uses the same."""
    if mode in _TORCH_ONLY:
        raise NotImplementedError(f"{op}: mode={mode!r} is not supported yet; supported: "
                                  f"{MODES}")
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be one of {MODES + _TORCH_ONLY}, got {mode!r}")
    ndim = len(shape)
    if ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (N, C, L) or 4-D (N, C, H, W) input, got "
                         f"shape {tuple(shape)}")
    dims = ndim - 2
    if mode in _LINEAR_DIMS and _LINEAR_DIMS[mode] != dims:
        raise ValueError(f"{op}: mode={mode!r} needs a {_LINEAR_DIMS[mode] + 2}-D input, got "
                         f"a {ndim}-D one")
    linear = mode in _LINEAR_DIMS
    if align_corners is not None:
        if not linear:
            raise ValueError("align_corners option can only be set with the interpolating "
                             "modes: linear | bilinear | bicubic | trilinear")
        if not isinstance(align_corners, (bool, np.bool_)):
            raise TypeError(f"{op}: align_corners must be a bool, got {align_corners!r}")
    if antialias:
        raise NotImplementedError(f"{op}: antialias=True is not supported yet")
    in_sizes = tuple(shape[2:])
    out_sizes, scales = _output_sizes(op, in_sizes, size, scale_factor, recompute_scale_factor)
    if min(in_sizes) <= 0 or min(out_sizes) <= 0:
        raise ValueError(f"{op}: input and output sizes should be greater than 0, but got "
                         f"input {tuple(in_sizes)} and output {tuple(out_sizes)}")
    return [axis_sources(np.dtype(dtype), n_in, n_out, scale, mode, align_corners)
            for n_in, n_out, scale in zip(in_sizes, out_sizes, scales)]


def axis_sources(dtype, n_in, n_out, scale, mode, align_corners):
    """(low, high, weight) of one axis: output index d reads input ``low[d]`` (nearest
    modes: high and weight are None), or ``low[d] * (1 - weight[d]) + high[d] *
    weight[d]`` (linear modes); see the module's docstring."""
    linear = mode in _LINEAR_DIMS
    ratio = _ratio(dtype, n_in, n_out, scale, bool(align_corners) and linear)
    position = np.arange(n_out, dtype=dtype)
    if not linear:
        offset = dtype.type(0.5 if mode == "nearest-exact" else 0.0)
        return np.minimum(np.floor((position + offset) * ratio).astype(np.int64), n_in - 1), \
            None, None
    if align_corners:
        source = position * ratio
    else:
        source = np.maximum((position + dtype.type(0.5)) * ratio - dtype.type(0.5),
                            dtype.type(0))
    low = np.minimum(np.floor(source).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (source - low).astype(dtype)


def axis_matrix(dtype, n_in, n_out, scale, mode, align_corners):
    """The (n_out, n_in) matrix of one axis's interpolation (:func:`axis_sources`): its
    transpose carries a gradient back along that axis."""
    low, high, weight = axis_sources(dtype, n_in, n_out, scale, mode, align_corners)
    matrix = np.zeros((n_out, n_in), dtype)
    rows = np.arange(n_out)
    if weight is None:
        matrix[rows, low] = 1
        return matrix
    np.add.at(matrix, (rows, low), 1 - weight)
    np.add.at(matrix, (rows, high), weight)
    return matrix


def _output_sizes(op, in_sizes, size, scale_factor, recompute_scale_factor):
    """(output sizes, scale factors or None per axis), torch's rules."""
    dims = len(in_sizes)
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined" if size is not
                         None else "either size or scale_factor should be defined")
    if size is not None:
        sizes = _per_axis(op, "size", size, dims, _is_int)
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
        return tuple(int(s) for s in sizes), (None,) * dims
    factors = _per_axis(op, "scale_factor", scale_factor, dims,
                        lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool))
    if any(not f > 0 or not math.isfinite(f) for f in factors):
        raise ValueError(f"{op}: scale_factor must be positive and finite, got "
                         f"{scale_factor!r}")
    sizes = tuple(int(math.floor(n * float(f))) for n, f in zip(in_sizes, factors))
    scales = (None,) * dims if recompute_scale_factor else tuple(float(f) for f in factors)
    return sizes, scales


def _per_axis(op, name, value, dims, check):
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims
    if len(values) != dims:
        raise ValueError(f"{op}: {name} must be one value or {dims} (one per spatial axis), "
                         f"got {value!r}")
    if not all(check(v) for v in values):
        raise TypeError(f"{op}: {name} has an invalid entry: {value!r}")
    return values


def _ratio(dtype, n_in, n_out, scale, align_corners):
    """Source units per output unit, in the input's dtype, as torch's
    area_pixel_compute_scale computes it."""
    t = dtype.type
    if align_corners:
        return t(n_in - 1) / t(n_out - 1) if n_out > 1 else t(0)
    if scale is not None:
        return t(1.0 / scale)
    return t(n_in) / t(n_out) if n_out > 0 else t(0)
