"""What one task of :mod:`numbaconv.dask_arrays` computes: each layer's geometry along a
spatial axis, and the layer as a step on the region a task gathered.

An axis object (:class:`WindowAxis` for convolutions and pooling, :class:`SpreadAxis` for
transposed convolutions, :class:`AdaptiveAxis`, :class:`SameAxis` for pointwise layers)
answers two questions: which input positions an output range reads (``sources``), and
where an input chunk border falls in the output (``output_bounds``). A step
(:class:`Step`) holds a layer's axes and parameters and computes the outputs of given
ranges from an array holding given input positions (``compute``): it pads only where the
windows leave the array (the layer's padding mode), then runs the in-memory kernel with
no padding of its own, so that a task's outputs are the whole call's.
"""

from __future__ import annotations

import numpy as np

from . import array_pool
from .padding import _NUMPY_MODE


# ------------------------------------------------------------------ one spatial axis

class WindowAxis:
    """A sliding window along one axis: output ``o`` reads inputs ``o * stride - pad +
    t * dilation`` for ``t < kernel``; positions outside ``[0, length)`` read the padding
    (``mode``: 'zeros' gives the step's fill value; 'reflect', 'replicate', 'circular'
    read the positions torch's padding modes copy)."""

    def __init__(self, length, out_length, kernel, stride, dilation, pad, mode="zeros",
                 align=1):
        self.length, self.out_length = length, out_length
        self.kernel, self.stride, self.dilation, self.pad = kernel, stride, dilation, pad
        self.mode = mode
        # Output ranges start at multiples of ``align`` and end at one or at the end
        # (Winograd's output tiles: then a task computes each tile as the whole call does)
        self.align = align

    def virtual(self, lo, hi):
        """The padded input range [a, b) outputs [lo, hi) read (a < 0: padding)."""
        reach = self.dilation * (self.kernel - 1) + 1
        return lo * self.stride - self.pad, (hi - 1) * self.stride - self.pad + reach

    def source(self, v):
        """The input position each padded position ``v`` (a run of consecutive positions)
        copies, -1 for the fill value; other padding modes by np.pad's own mapping applied
        to the positions, as the in-memory calls pad."""
        n = self.length
        if self.mode == "zeros" or not len(v):
            return np.where((v >= 0) & (v < n), v, -1)
        before, after = max(0, -int(v[0])), max(0, int(v[-1]) + 1 - n)
        padded = np.pad(np.arange(n), (before, after), mode=_NUMPY_MODE[self.mode])
        return padded[v + before]

    def sources(self, lo, hi):
        if hi <= lo:
            return np.empty(0, np.int64)
        src = self.source(np.arange(*self.virtual(lo, hi)))
        return np.unique(src[src >= 0])

    def output_bounds(self, bounds):
        """Output chunk borders for input chunk borders ``b``: ``b // stride``, the output
        a centred window ('same' padding) puts at ``b``. Input chunks that are multiples of
        the stride give output chunks of one size (but the last), as Zarr needs."""
        return bounds // self.stride


class SpreadAxis:
    """A transposed convolution along one axis: input ``i`` adds into outputs ``i * stride
    - pad + t * dilation``."""

    align = 1  # (see WindowAxis)

    def __init__(self, length, out_length, kernel, stride, dilation, pad):
        self.length, self.out_length = length, out_length
        self.kernel, self.stride, self.dilation, self.pad = kernel, stride, dilation, pad

    def sources(self, lo, hi):
        reach = self.dilation * (self.kernel - 1)
        first = max(0, -(-(lo + self.pad - reach) // self.stride))
        stop = min(self.length, (hi - 1 + self.pad) // self.stride + 1)
        return np.arange(first, max(first, stop))

    def output_bounds(self, bounds):
        return bounds * self.stride


class AdaptiveAxis:
    """Adaptive pooling along one axis: output ``o`` reads inputs ``[floor(o * L / O),
    ceil((o + 1) * L / O))``."""

    align = 1  # (see WindowAxis)

    def __init__(self, length, out_length):
        self.length, self.out_length = length, out_length

    def window(self, o):
        return o * self.length // self.out_length, -(-(o + 1) * self.length // self.out_length)

    def sources(self, lo, hi):
        if hi <= lo:
            return np.empty(0, np.int64)
        return np.arange(self.window(lo)[0], self.window(hi - 1)[1])

    def output_bounds(self, bounds):
        return -(-(bounds * self.out_length) // self.length)


class SameAxis:
    """A pointwise layer: output ``o`` reads input ``o``."""

    align = 1  # (see WindowAxis)

    def __init__(self, length):
        self.length = self.out_length = length

    def sources(self, lo, hi):
        return np.arange(lo, max(lo, hi))

    def output_bounds(self, bounds):
        return bounds


# ------------------------------------------------------------------------- the steps

def _positions(held, wanted):
    """Indices into ``held`` (sorted positions an array holds along an axis) of ``wanted``
    positions, -1 where ``wanted`` is -1; a slice when they are one contiguous run."""
    local = np.searchsorted(held, wanted)
    valid = wanted >= 0
    local = np.where(valid, local, -1)
    if len(local) and valid.all() and local[-1] - local[0] == len(local) - 1:
        return slice(int(local[0]), int(local[-1]) + 1)
    return local


def _restrict(data, held, ranges):
    """``data`` cut to the output ranges (positions [lo, hi) per spatial axis)."""
    index = [slice(None), slice(None)]
    for positions, (lo, hi) in zip(held, ranges):
        index.append(_positions(positions, np.arange(lo, hi)))
    if all(isinstance(i, slice) for i in index):
        return data[tuple(index)]
    return data[tuple(index[:2]) + np.ix_(*[np.arange(len(h))[i] for h, i in
                                             zip(held, index[2:])])]


def _padded(data, held, axes, ranges, fill):
    """The padded input region outputs ``ranges`` of a window step read: ``data``'s
    positions where the window is inside the array, the padding elsewhere."""
    locals_ = []
    for positions, axis, (lo, hi) in zip(held, axes, ranges):
        a, b = axis.virtual(lo, hi)
        locals_.append(_positions(positions, axis.source(np.arange(a, b))))
    head = (slice(None), slice(None))
    if all(isinstance(local, slice) for local in locals_):
        return data[head + tuple(locals_)]  # no padding inside: a view
    sizes = [local.stop - local.start if isinstance(local, slice) else len(local)
             for local in locals_]
    shape = data.shape[:2] + tuple(sizes)
    runs = [_run_between_fills(local) for local in locals_]
    if all(run is not None for run in runs):  # zero padding: one block copy, then margins
        out = array_pool.empty(shape, data.dtype)
        inner = tuple(dst for dst, _ in runs)
        out[head + inner] = data[head + tuple(src for _, src in runs)]
        for d, (dst, size) in enumerate(zip(inner, sizes)):
            before = head + inner[:d] + (slice(0, dst.start),)
            after = head + inner[:d] + (slice(dst.stop, size),)
            out[before] = fill  # (the axes before d whole: every corner written once)
            out[after] = fill
            inner = inner[:d] + (slice(None),) + inner[d + 1:]
        return out
    out = np.full(shape, fill, dtype=data.dtype)
    dst, src = [], []
    for local in locals_:
        local = np.arange(local.start, local.stop) if isinstance(local, slice) else local
        keep = local >= 0
        dst.append(np.flatnonzero(keep))
        src.append(local[keep])
    out[head + np.ix_(*dst)] = data[head + np.ix_(*src)]
    return out


def _run_between_fills(local):
    """(where, what) slices when ``local`` is fill (-1) at its ends around one contiguous
    run of positions (zero padding at a border), else None."""
    if isinstance(local, slice):
        return slice(0, local.stop - local.start), local
    keep = np.flatnonzero(local >= 0)
    if not len(keep):
        return slice(0, 0), slice(0, 0)
    first, last = int(keep[0]), int(keep[-1])
    run = local[first:last + 1]
    if len(keep) != last - first + 1 or run[-1] - run[0] != last - first:
        return None
    return slice(first, last + 1), slice(int(run[0]), int(run[-1]) + 1)


def _empty_output(data, ranges, channels, dtype):
    return np.zeros(data.shape[:1] + (channels,) + tuple(hi - lo for lo, hi in ranges), dtype)


class Step:
    """One layer as the tasks run it. ``axes``: one per spatial axis; ``all_channels``:
    reads every input channel (one output chunk of ``out_channels``); ``compute(data,
    held, ranges, channels)``: the outputs at ``ranges`` (per spatial axis) from ``data``
    holding positions ``held`` (per axis) of input channels ``channels`` = (c0, c1)."""

    all_channels = False
    out_channels = None
    fill = 0.0  # what the padding of a zero-padded window holds

    def __init__(self, axes, dtype):
        self.axes = tuple(axes)
        self.dtype = np.dtype(dtype)


class ConvStep(Step):
    all_channels = True

    def __init__(self, spec, weight, bias, ndim):
        from .planner import make_plan

        mode = spec.padding_mode
        # The algorithm the whole call would run. Winograd's result depends on where its
        # output tiles start (the transforms round differently than the direct sum), so
        # tasks run it too, on ranges aligned to its tiles (per dilation phase): then each
        # value is the whole call's, bit for bit; others are exact to float rounding.
        algorithm = make_plan(spec).algorithm
        tile = {"winograd_f4x4": 4, "winograd_f2x2": 2}.get(algorithm, 0)
        self.algorithm = algorithm if tile else "auto"
        axes = [WindowAxis(spec.in_width, spec.out_width, spec.kernel_width, spec.stride_w,
                            spec.dilation_w, spec.pad_left, mode,
                            max(1, tile * spec.dilation_w))]
        if ndim == 2:
            axes.insert(0, WindowAxis(spec.in_height, spec.out_height, spec.kernel_height,
                                       spec.stride_h, spec.dilation_h, spec.pad_top, mode,
                                       max(1, tile * spec.dilation_h)))
        super().__init__(axes, spec.dtype)
        self.out_channels = spec.out_channels
        self.weight, self.bias, self.groups, self.ndim = weight, bias, spec.groups, ndim
        self.stride = tuple(a.stride for a in self.axes)
        self.dilation = tuple(a.dilation for a in self.axes)

    def compute(self, data, held, ranges, channels):
        from .functional import conv1d, conv2d

        if any(hi <= lo for lo, hi in ranges):
            return _empty_output(data, ranges, self.out_channels, self.dtype)
        x = _padded(data, held, self.axes, ranges, self.fill)
        run = conv2d if self.ndim == 2 else conv1d
        return run(np.ascontiguousarray(x), self.weight, self.bias, self.stride, 0,
                   self.dilation, self.groups, algorithm=self.algorithm)


class ConvTransposeStep(Step):
    all_channels = True

    def __init__(self, spec, weight, bias, ndim):
        def axis(i, length, out_length, kernel):
            return SpreadAxis(length, out_length, kernel, spec.stride[i], spec.dilation[i],
                               spec.padding[i])

        axes = [axis(1, spec.in_width, spec.out_width, spec.kernel_width)]
        if ndim == 2:
            axes.insert(0, axis(0, spec.in_height, spec.out_height, spec.kernel_height))
        super().__init__(axes, spec.dtype)
        self.out_channels = spec.out_channels
        self.weight, self.bias, self.groups, self.ndim = weight, bias, spec.groups, ndim
        self.stride = tuple(spec.stride[2 - ndim:])
        self.dilation = tuple(spec.dilation[2 - ndim:])

    def compute(self, data, held, ranges, channels):
        from .transposed import conv_transpose1d, conv_transpose2d

        out = _empty_output(data, ranges, self.out_channels, self.dtype)
        inputs = [a.sources(lo, hi) for a, (lo, hi) in zip(self.axes, ranges)]
        if all(len(i) for i in inputs) and out.size:
            x = _restrict(data, held, [(int(i[0]), int(i[-1]) + 1) for i in inputs])
            run = conv_transpose2d if self.ndim == 2 else conv_transpose1d
            part = run(np.ascontiguousarray(x), self.weight, None, self.stride, 0, 0,
                       self.groups, self.dilation)
            dst, src = [slice(None), slice(None)], [slice(None), slice(None)]
            for axis, first, (lo, hi), size in zip(self.axes, inputs, ranges, part.shape[2:]):
                start = int(first[0]) * axis.stride - axis.pad  # output position of part's 0
                a, b = max(lo, start), min(hi, start + size)
                dst.append(slice(a - lo, max(a, b) - lo))
                src.append(slice(a - start, max(a, b) - start))
            out[tuple(dst)] = part[tuple(src)]
        if self.bias is not None:
            out += self.bias.reshape((-1,) + (1,) * self.ndim)
        return out


def _pool_axes(spec, ndim, dilation):
    """A pooling spec's axes (its 1-D ops: the width alone)."""
    return [WindowAxis(getattr(spec, f"in_{side}"), getattr(spec, f"out_{side}"),
                       spec.kernel[i], spec.stride[i], spec.dilation[i] if dilation else 1,
                       spec.padding[i]) for i, side in enumerate(("height", "width"))][2 - ndim:]


class _PoolStep(Step):
    """Max or average pooling: the padded region through the in-memory 2-D kernel (1-D
    pooling as planes of one row)."""

    def __init__(self, spec, ndim, dtype, dilation):
        super().__init__(_pool_axes(spec, ndim, dilation), dtype)
        self.ndim = ndim

    def pooled(self, data, held, ranges, pool):
        """``pool(x, kernel, stride, dilation)`` on the padded region, as 2-D planes."""
        x = np.ascontiguousarray(_padded(data, held, self.axes, ranges, self.fill))
        lift = (1,) * (2 - self.ndim)
        out = pool(x.reshape(x.shape[:2] + lift + x.shape[2:]),
                   lift + tuple(a.kernel for a in self.axes),
                   lift + tuple(a.stride for a in self.axes),
                   lift + tuple(a.dilation for a in self.axes))
        return out[:, :, 0] if self.ndim == 1 else out


class MaxPoolStep(_PoolStep):
    fill = -np.inf  # (the padding max pooling never takes)

    def __init__(self, spec, ndim, dtype):
        super().__init__(spec, ndim, dtype, dilation=True)

    def compute(self, data, held, ranges, channels):
        from .pooling import max_pool2d

        if any(hi <= lo for lo, hi in ranges):
            return _empty_output(data, ranges, data.shape[1], self.dtype)
        return self.pooled(data, held, ranges, lambda x, k, s, d: max_pool2d(x, k, s, 0, d))


class AvgPoolStep(_PoolStep):
    def __init__(self, spec, ndim, dtype, count_include_pad, divisor_override):
        super().__init__(spec, ndim, dtype, dilation=False)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def _divisors(self, axis, lo, hi):
        """torch's divisor along one axis for outputs [lo, hi) (avg_pool2d's: the window
        clipped to the padded input, or to the input without ``count_include_pad``)."""
        start = np.arange(lo, hi) * axis.stride - axis.pad
        end = np.minimum(start + axis.kernel, axis.length + axis.pad)
        size = end - start
        if self.count_include_pad:
            return size
        return np.minimum(end, axis.length) - np.maximum(start, 0)

    def compute(self, data, held, ranges, channels):
        from .pooling import avg_pool2d

        if any(hi <= lo for lo, hi in ranges):
            return _empty_output(data, ranges, data.shape[1], self.dtype)
        sums = self.pooled(data, held, ranges,
                           lambda x, k, s, d: avg_pool2d(x, k, s, 0, divisor_override=1))
        if self.divisor_override is not None:
            return (sums / self.dtype.type(self.divisor_override)).astype(self.dtype)
        divisor = np.ones((), np.int64)
        for axis, (lo, hi) in zip(self.axes, ranges):
            divisor = np.multiply.outer(divisor, self._divisors(axis, lo, hi))
        return (sums / divisor.astype(self.dtype)).astype(self.dtype, copy=False)


class AdaptiveStep(Step):
    def __init__(self, in_sizes, out_sizes, take_max, dtype):
        super().__init__([AdaptiveAxis(n, o) for n, o in zip(in_sizes, out_sizes)], dtype)
        self.take_max = take_max

    def compute(self, data, held, ranges, channels):
        reduce = np.max if self.take_max else np.sum
        x = data
        for d, (positions, axis, (lo, hi)) in enumerate(zip(held, self.axes, ranges)):
            dim = 2 + d
            parts = []
            for o in range(lo, hi):
                a, b = axis.window(o)
                i = _positions(positions, np.arange(a, b))
                part = np.take(x, np.arange(x.shape[dim])[i], axis=dim)
                parts.append(reduce(part, axis=dim, keepdims=True)
                             / (1 if self.take_max else b - a))
            x = np.concatenate(parts, axis=dim) if parts else \
                np.zeros(x.shape[:dim] + (0,) + x.shape[dim + 1:], x.dtype)
            held = list(held)
            held[d] = np.arange(lo, hi)
        return x.astype(self.dtype, copy=False)


class PointwiseStep(Step):
    """An elementwise layer (``function(x)``), or a per-channel one (``per_channel``:
    ``function(x, c0, c1)`` for channels [c0, c1))."""

    def __init__(self, lengths, function, dtype, per_channel=False):
        super().__init__([SameAxis(n) for n in lengths], dtype)
        self.function, self.per_channel = function, per_channel

    def compute(self, data, held, ranges, channels):
        x = _restrict(data, held, ranges)
        return self.function(x, *channels) if self.per_channel else self.function(x)
