"""numbaconv on Dask arrays: lazy, chunked, and exact at every chunk border.

The public functions of numbaconv (``conv1d``, ``conv2d``, ``conv_transpose1d/2d``, the
pooling functions, the activations, eval-mode ``batch_norm`` and ``linear``) and
``numbaconv.nn.Sequential`` accept a ``dask.array.Array`` and return a lazy one; the
functions here are what they call. Nothing is computed until the result is (``.compute()``,
``.to_zarr()``, ``client.compute``...), on whatever scheduler Dask is told to use: threads,
processes, or a ``dask.distributed`` cluster.

How a chunk is computed exactly
-------------------------------
Each output chunk is one task. Along each spatial axis the layer's spec says which input
positions an output range reads (a window op: ``o * stride - padding + t * dilation``
for taps ``t``; a transposed convolution the inverse; adaptive pooling its own windows).
The task gathers exactly those positions from the input chunks that hold them (however
small the chunks: a halo may span several), puts the layer's padding only where the
window leaves the array (``padding_mode`` too: reflect, replicate and circular read the
positions torch would), and runs the in-memory kernel with no padding of its own on that
region. The output is the in-memory call's, to float rounding (the same algorithm runs
on a smaller array; it can be chosen differently for the tile's size).

Output chunks follow the input's: an input chunk border ``b`` becomes the output border
``b // stride`` (``b * stride`` for a transposed convolution), so a stride-2 layer halves
every chunk, chunks stay aligned through a network, and input chunks that are multiples
of a model's total stride give output chunks of one size but the last (what ``to_zarr``
needs; others can be rechunked).

Channels: a convolution reads every input channel, so its task takes all of a block's
channel chunks (merged) and writes one chunk of output channels; pooling, activations
and batch norm keep the channel chunks. The batch axis is never exchanged.

Whole stacks
------------
``numbaconv.nn.Sequential`` on a Dask array runs runs of its layers as one task per
output chunk (:func:`sequential`): the halo each output range needs is composed through
the layers (each layer's reach, scaled by the strides after it), gathered once, and
every layer runs in the task on the part the next one needs, with each layer's padding
applied only at the true border of its own input. One overlap exchange per stack instead
of one per layer; pointwise layers (activations, eval batch norm, dropout in eval) add
no halo. A layer with ``padding_mode`` other than zeros starts a new stack (its padding
may read across the array: circular), as does any module that is not a layer listed
here (it then runs on the Dask array as its own forward pass says).

Threads and memory
------------------
Every task runs its kernels on ``task_threads()`` Numba threads (default 1; set it with
:func:`set_task_threads` or ``NUMBACONV_DASK_THREADS``, read when the graph is built):
Dask's own threads or worker processes are the parallelism, and Numba threads times Dask
threads must not exceed the cores. With ``LocalCluster(n_workers=W,
threads_per_worker=T)`` on a machine of ``C`` cores keep ``W * T * task_threads <= C``.
A task holds its input region (its chunks plus the halo), the intermediate layers'
outputs of a stack and its output: memory per task follows the chunk size, and the memory
limit (``numbaconv.set_memory_limit``, ``NUMBACONV_MEMORY_LIMIT``) is checked by each
kernel call inside the task, in the worker's process.

Weights travel once: each graph holds the layer (weights included) as one key that every
task depends on, so a distributed scheduler sends it to each worker once.

>>> import numpy as np, dask.array as da, numbaconv
>>> x = da.from_array(np.ones((1, 1, 8, 8), np.float32), chunks=(1, 1, 3, 3))
>>> y = numbaconv.conv2d(x, np.ones((1, 1, 3, 3), np.float32), padding=1)
>>> y.chunks[2], float(y[0, 0, 0, 0].compute()), float(y[0, 0, 4, 4].compute())
((3, 3, 2), 4.0, 9.0)
>>> numbaconv.max_pool2d(y, 2).chunks[2]  # (each border halved)
(1, 2, 1)
"""

from __future__ import annotations

import contextlib
import operator
import os

import numpy as np

from . import array_pool
from ._dask_dispatch import is_dask_array
from .spec import check_float_array, check_float_dtype, conv_spec, conv_transpose_spec

__all__ = ["is_dask_array", "set_task_threads", "task_threads", "sequential", "per_batch"]

_task_threads: int | None = None


def set_task_threads(threads: int | None) -> None:
    """Numba threads per Dask task for graphs built from now on (None: the default,
    ``NUMBACONV_DASK_THREADS`` or 1)."""
    global _task_threads
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"set_task_threads: threads must be a positive int or None, "
                         f"got {threads!r}")
    _task_threads = threads


def task_threads() -> int:
    """Numba threads each task of a graph built now will use."""
    if _task_threads is not None:
        return _task_threads
    text = os.environ.get("NUMBACONV_DASK_THREADS", "")
    try:
        return max(1, int(text)) if text else 1
    except ValueError:
        raise ValueError(f"NUMBACONV_DASK_THREADS must be a positive int, got {text!r}") \
            from None


@contextlib.contextmanager
def _numba_threads(threads: int):
    """Numba's thread count for this thread (Numba keeps it per thread), then back."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


# ------------------------------------------------------------------ one spatial axis

class _WindowAxis:
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
        """The input position each padded position ``v`` copies, -1 for the fill value."""
        n = self.length
        if self.mode == "reflect":
            v = np.abs(v)
            return np.where(v >= n, 2 * (n - 1) - v, v)
        if self.mode == "replicate":
            return np.clip(v, 0, n - 1)
        if self.mode == "circular":
            return np.mod(v, n)
        return np.where((v >= 0) & (v < n), v, -1)

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


class _SpreadAxis:
    """A transposed convolution along one axis: input ``i`` adds into outputs ``i * stride
    - pad + t * dilation``."""

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


class _AdaptiveAxis:
    """Adaptive pooling along one axis: output ``o`` reads inputs ``[floor(o * L / O),
    ceil((o + 1) * L / O))``."""

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


class _SameAxis:
    """A pointwise layer: output ``o`` reads input ``o``."""

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


class _Step:
    """One layer as the tasks run it. ``axes``: one per spatial axis; ``all_channels``:
    reads every input channel (one output chunk of ``out_channels``); ``compute(data,
    held, ranges, channels)``: the outputs at ``ranges`` (per spatial axis) from ``data``
    holding positions ``held`` (per axis) of input channels ``channels`` = (c0, c1)."""

    all_channels = False
    out_channels = None
    fill = 0.0

    def __init__(self, axes, dtype):
        self.axes = tuple(axes)
        self.dtype = np.dtype(dtype)


class _ConvStep(_Step):
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
        axes = [_WindowAxis(spec.in_width, spec.out_width, spec.kernel_width, spec.stride_w,
                            spec.dilation_w, spec.pad_left, mode,
                            max(1, tile * spec.dilation_w))]
        if ndim == 2:
            axes.insert(0, _WindowAxis(spec.in_height, spec.out_height, spec.kernel_height,
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
        x = _padded(data, held, self.axes, ranges, 0.0)
        run = conv2d if self.ndim == 2 else conv1d
        return run(np.ascontiguousarray(x), self.weight, self.bias, self.stride, 0,
                   self.dilation, self.groups, algorithm=self.algorithm)


class _ConvTransposeStep(_Step):
    all_channels = True

    def __init__(self, spec, weight, bias, ndim):
        def axis(i, length, out_length, kernel):
            return _SpreadAxis(length, out_length, kernel, spec.stride[i], spec.dilation[i],
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


class _MaxPoolStep(_Step):
    fill = -np.inf

    def __init__(self, spec, ndim, dtype):
        axes = [_WindowAxis(spec.in_width, spec.out_width, spec.kernel[1], spec.stride[1],
                            spec.dilation[1], spec.padding[1])]
        if ndim == 2:
            axes.insert(0, _WindowAxis(spec.in_height, spec.out_height, spec.kernel[0],
                                       spec.stride[0], spec.dilation[0], spec.padding[0]))
        super().__init__(axes, dtype)
        self.ndim = ndim

    def compute(self, data, held, ranges, channels):
        from .pooling import max_pool2d

        if any(hi <= lo for lo, hi in ranges):
            return _empty_output(data, ranges, data.shape[1], self.dtype)
        x = np.ascontiguousarray(_padded(data, held, self.axes, ranges, -np.inf))
        if self.ndim == 1:
            x = x[:, :, None, :]
        kernel = (1,) * (2 - self.ndim) + tuple(a.kernel for a in self.axes)
        stride = (1,) * (2 - self.ndim) + tuple(a.stride for a in self.axes)
        dilation = (1,) * (2 - self.ndim) + tuple(a.dilation for a in self.axes)
        out = max_pool2d(x, kernel, stride, 0, dilation)
        return out[:, :, 0] if self.ndim == 1 else out


class _AvgPoolStep(_Step):
    def __init__(self, spec, ndim, dtype, count_include_pad, divisor_override):
        axes = [_WindowAxis(spec.in_width, spec.out_width, spec.kernel[1], spec.stride[1],
                            1, spec.padding[1])]
        if ndim == 2:
            axes.insert(0, _WindowAxis(spec.in_height, spec.out_height, spec.kernel[0],
                                       spec.stride[0], 1, spec.padding[0]))
        super().__init__(axes, dtype)
        self.ndim = ndim
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
        x = np.ascontiguousarray(_padded(data, held, self.axes, ranges, 0.0))
        if self.ndim == 1:
            x = x[:, :, None, :]
        kernel = (1,) * (2 - self.ndim) + tuple(a.kernel for a in self.axes)
        stride = (1,) * (2 - self.ndim) + tuple(a.stride for a in self.axes)
        sums = avg_pool2d(x, kernel, stride, 0, divisor_override=1)
        if self.ndim == 1:
            sums = sums[:, :, 0]
        if self.divisor_override is not None:
            return (sums / self.dtype.type(self.divisor_override)).astype(self.dtype)
        divisor = np.ones((), np.int64)
        for axis, (lo, hi) in zip(self.axes, ranges):
            divisor = np.multiply.outer(divisor, self._divisors(axis, lo, hi))
        return (sums / divisor.astype(self.dtype)).astype(self.dtype, copy=False)


class _AdaptiveStep(_Step):
    def __init__(self, in_sizes, out_sizes, take_max, dtype):
        super().__init__([_AdaptiveAxis(n, o) for n, o in zip(in_sizes, out_sizes)], dtype)
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


class _PointwiseStep(_Step):
    """An elementwise layer (``function(x)``), or a per-channel one (``per_channel``:
    ``function(x, c0, c1)`` for channels [c0, c1))."""

    def __init__(self, lengths, function, dtype, per_channel=False):
        super().__init__([_SameAxis(n) for n in lengths], dtype)
        self.function, self.per_channel = function, per_channel

    def compute(self, data, held, ranges, channels):
        x = _restrict(data, held, ranges)
        return self.function(x, *channels) if self.per_channel else self.function(x)


# ------------------------------------------------------------------------ the graph

class _Stack:
    """The layers every task of one graph runs (one graph key: sent to each worker once)."""

    def __init__(self, steps, threads):
        self.steps, self.threads = tuple(steps), threads


class _TilePlan:
    """What one task needs besides the input chunks: the positions the gathered chunks
    hold along each spatial axis, and each step's output ranges and input channels."""

    def __init__(self, held, ranges, channels):
        self.held, self.ranges, self.channels = held, ranges, channels


def _gather(blocks, depth):
    """The nested pieces (channels, then each spatial axis) as one array, copied once into
    pooled memory (fresh memory in a worker costs page faults as long as the copy)."""
    def first_piece(level):
        while isinstance(level, list):
            level = level[0]
        return level

    sample = first_piece(blocks)
    lead = sample.ndim - depth  # the axes not gathered (the batch axis)
    sizes, line = [], blocks
    for d in range(depth):
        sizes.append(sum(first_piece(item).shape[lead + d] for item in line))
        line = line[0]
    out = array_pool.empty(sample.shape[:lead] + tuple(sizes), sample.dtype)

    def place(level, d, where):
        offset = 0
        for item in level:
            size = first_piece(item).shape[lead + d]
            span = where + (slice(offset, offset + size),)
            if d == depth - 1:
                out[(slice(None),) * lead + span] = item
            else:
                place(item, d + 1, span)
            offset += size

    place(blocks, 0, ())
    return out


class _Cuts:
    """The index tuples of a chunk's pieces (an object, so that Dask takes it as data)."""

    def __init__(self, cuts):
        self.cuts = tuple(cuts)


def _cut(chunk, cuts):
    """The pieces of ``chunk`` that tiles read, as copies (a view would keep, and send,
    the whole chunk)."""
    return tuple(np.ascontiguousarray(chunk[cut]) for cut in cuts.cuts)


def _run_tile(stack, blocks, plan):
    data = _gather(blocks, len(plan.held) + 1)
    held = plan.held
    with _numba_threads(stack.threads):
        for step, ranges, channels in zip(stack.steps, plan.ranges, plan.channels):
            data = step.compute(data, held, ranges, channels)
            held = [np.arange(lo, hi) for lo, hi in ranges]
    return data


def _stored_reads(x):
    """A function giving, for a chunk key of ``x``, the chunk's own task when that task
    only reads stored data (its dependencies are all data, as in ``from_zarr`` and
    ``from_array`` graphs), to run inline again; None for any other chunk."""
    graph = x.__dask_graph__()

    def is_data(value):  # a stored object (the zarr.Array), not a computation
        if type(value).__name__ == "DataNode":
            return True
        return not hasattr(value, "dependencies") and not (
            isinstance(value, tuple) and value and callable(value[0]))

    def read(key):
        task = graph.get(key)
        if type(task).__name__ != "Task":  # (an alias, a literal, an older Dask's tuple)
            return None
        dependencies = getattr(task, "dependencies", None)
        if dependencies is None or not all(d in graph and is_data(graph[d])
                                           for d in dependencies):
            return None
        return task

    return read


def _borders(chunks):
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _aligned(range_, axis):
    """An output range widened to whole tiles of ``axis.align`` outputs (the last may end
    at the axis' end), at least one tile long where the axis has one."""
    lo, hi = range_
    align = getattr(axis, "align", 1)
    if align == 1 or hi <= lo:
        return range_
    lo, hi = lo // align * align, min(axis.out_length, -(-hi // align) * align)
    if hi - lo < align:
        lo = max(0, hi - align) // align * align
    return lo, hi


def _nested(keys_of, levels):
    """A nested list of keys over the product of ``levels`` (lists of block indices)."""
    if len(levels) == 1:
        return [keys_of((i,)) for i in levels[0]]
    return [_nested(lambda rest, i=i: keys_of((i,) + rest), levels[1:]) for i in levels[0]]


def _apply(x, steps, name):
    """The Dask array of ``steps`` run on ``x`` (N, C, *spatial), one task per output chunk."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    nsp = x.ndim - 2
    stack = _Stack(steps, task_threads())
    all_channels = any(step.all_channels for step in steps)
    out_channels = x.shape[1]
    for step in steps:
        if step.out_channels is not None:
            out_channels = step.out_channels
    dtype = steps[-1].dtype
    token = tokenize(x.name, [(type(s).__name__, vars(s)) for s in steps], stack.threads)
    out_name = f"{name}-{token}"
    stack_key = (f"{name}-layers-{token}",)

    in_borders = [_borders(c) for c in x.chunks[2:]]
    out_borders = []
    for d in range(nsp):
        bounds = in_borders[d]
        for step in steps:
            axis = step.axes[d]
            bounds = np.clip(axis.output_bounds(bounds), 0, axis.out_length)
            bounds[0], bounds[-1] = 0, axis.out_length
        align = getattr(steps[-1].axes[d], "align", 1)
        if align > 1:  # chunks of whole tiles; none shorter than a tile at the end
            end = steps[-1].axes[d].out_length
            bounds = bounds // align * align
            bounds[bounds > end - align] = end
            bounds[0] = 0
        out_borders.append(np.unique(bounds))
    channel_borders = _borders(x.chunks[1])
    out_chunks = (x.chunks[0], (out_channels,) if all_channels else x.chunks[1]) + tuple(
        tuple(int(s) for s in np.diff(b)) if len(b) > 1 else (0,) for b in out_borders)

    # Per spatial axis and output chunk: each step's output range, and the pieces of
    # input chunks the first step reads: (chunk, first, stop) in the chunk's positions.
    axis_plans = []
    for d in range(nsp):
        borders = in_borders[d]
        plans = []
        for lo, hi in zip(out_borders[d][:-1], out_borders[d][1:]):
            ranges = [None] * len(steps)
            cur = (int(lo), int(hi))
            for s in range(len(steps) - 1, -1, -1):
                cur = _aligned(cur, steps[s].axes[d])
                ranges[s] = cur
                src = steps[s].axes[d].sources(*cur)
                cur = (int(src[0]), int(src[-1]) + 1) if len(src) else (0, 0)
            owner = np.searchsorted(borders, src, side="right") - 1
            pieces = [(int(j), int(src[owner == j].min() - borders[j]),
                       int(src[owner == j].max() + 1 - borders[j])) for j in np.unique(owner)]
            if not pieces:  # every window in padding: an empty piece of any chunk
                pieces = [(0, 0, 0)]
            held = np.concatenate([np.arange(borders[j] + a, borders[j] + b)
                                   for j, a, b in pieces])
            plans.append((ranges, pieces, held))
        axis_plans.append(plans if plans else [([(0, 0)] * len(steps), [(0, 0, 0)],
                                                np.arange(0))])

    halo_name = f"{name}-halo-{token}"
    layer = {stack_key: stack}
    cuts = {}  # input chunk key -> the pieces tiles read from it, in order
    reads = _stored_reads(x)

    def piece(n, c, pieces):
        """An input chunk, or the piece of it a tile reads. A chunk's pieces are cut by one
        task (its "halo" key, run where the chunk is) so that only the halos, not whole
        chunks, move between workers; each tile takes its own piece inline. A chunk that
        is only read from storage (``from_zarr``, ``from_array``) is read again inside its
        own tile rather than kept: otherwise every chunk whose halo was cut for the row of
        tiles before would wait in memory for its own tile (a front of chunks as wide as
        the image)."""
        chunk = (x.name, n, c) + tuple(j for j, _, _ in pieces)
        if all(a == 0 and b == x.chunks[2 + d][j] for d, (j, a, b) in enumerate(pieces)):
            return reads(chunk) or chunk
        cut = (slice(None), slice(None)) + tuple(slice(a, b) for _, a, b in pieces)
        wanted = cuts.setdefault(chunk, [])
        if cut not in wanted:
            wanted.append(cut)
        return (operator.getitem, (halo_name,) + chunk[1:], wanted.index(cut))

    for n in range(len(x.chunks[0])):
        for c in (range(1) if all_channels else range(len(x.chunks[1]))):
            channel_ids = list(range(len(x.chunks[1]))) if all_channels else [c]
            channels = [(0, x.shape[1]) if all_channels else
                        (int(channel_borders[c]), int(channel_borders[c + 1]))]
            for step in steps[:-1]:  # a convolution's outputs are all its channels
                channels.append((0, step.out_channels) if step.all_channels else channels[-1])
            for spatial in np.ndindex(*[len(p) for p in axis_plans]):
                chosen = [axis_plans[d][i] for d, i in enumerate(spatial)]
                blocks = _nested(lambda idx: piece(n, idx[0], idx[1:]),
                                 [channel_ids] + [p[1] for p in chosen])
                ranges = [tuple(p[0][s] for p in chosen) for s in range(len(steps))]
                plan = _TilePlan([p[2] for p in chosen], ranges, channels)
                layer[(out_name, n, c) + tuple(spatial)] = (_run_tile, stack_key, blocks, plan)
    for chunk, wanted in cuts.items():
        layer[(halo_name,) + chunk[1:]] = (_cut, chunk, _Cuts(wanted))
    graph = HighLevelGraph.from_collections(out_name, layer, dependencies=[x])
    return da.Array(graph, out_name, out_chunks, dtype=dtype,
                    meta=np.empty((0,) * x.ndim, dtype))


def _batched(op, x, nsp, run):
    """``run(x)`` on an (N, C, *spatial) array; an unbatched (C, *spatial) one gets a batch
    axis of one for the call, as the in-memory functions do."""
    if x.ndim == nsp + 1:
        return run(x[None])[0]
    if x.ndim != nsp + 2:
        raise ValueError(f"{op}: expected a {nsp + 1}D (unbatched) or {nsp + 2}D (batched) "
                         f"Dask array, got {x.ndim}D with shape {x.shape}")
    return run(x)


def _no_indices(op, return_indices):
    if return_indices:
        raise NotImplementedError(f"{op}: return_indices=True is not supported on Dask "
                                  f"arrays; compute the array first, or pool without indices")


# ------------------------------------------------------------------ public functions

def _conv_step(op, x, weight, bias, stride, padding, dilation, groups, padding_mode, nsp):
    check_float_dtype(op, "input", x.dtype)
    w = check_float_array(op, "weight", weight)
    b = None if bias is None else check_float_array(op, "bias", bias)
    dtype = np.result_type(x.dtype, w.dtype, *([] if b is None else [b.dtype]))
    spec = conv_spec(op, x.shape, w.shape, None if b is None else b.shape, stride, padding,
                     dilation, groups, padding_mode, dtype)
    return _ConvStep(spec, w.astype(spec.dtype, copy=False),
                     None if b is None else b.astype(spec.dtype, copy=False), nsp)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto", device=None, stream=None):
    """:func:`numbaconv.conv2d` on a Dask array (lazy; see the module docstring)."""
    _cpu_only("conv2d", algorithm, device, stream)
    step = _conv_step("conv2d", input, weight, bias, stride, padding, dilation, groups,
                      padding_mode, 2)
    return _batched("conv2d", input, 2, lambda x: _apply(x, [step], "conv2d"))


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, algorithm="auto", device=None, stream=None):
    """:func:`numbaconv.conv1d` on a Dask array (lazy; see the module docstring)."""
    _cpu_only("conv1d", algorithm, device, stream)
    step = _conv_step("conv1d", input, weight, bias, stride, padding, dilation, groups,
                      padding_mode, 1)
    return _batched("conv1d", input, 1, lambda x: _apply(x, [step], "conv1d"))


def _cpu_only(op, algorithm, device=None, stream=None):
    if algorithm != "auto" or device not in (None, "cpu") or stream is not None:
        raise ValueError(f"{op}: on Dask arrays the tasks run algorithm='auto' on the CPU "
                         f"(got algorithm={algorithm!r}, device={device!r}, stream={stream!r})")


def _conv_transpose_step(op, x, weight, bias, stride, padding, output_padding, groups,
                         dilation, nsp):
    check_float_dtype(op, "input", x.dtype)
    w = check_float_array(op, "weight", weight)
    b = None if bias is None else check_float_array(op, "bias", bias)
    dtype = np.result_type(x.dtype, w.dtype, *([] if b is None else [b.dtype]))
    spec = conv_transpose_spec(op, x.shape, w.shape, None if b is None else b.shape, stride,
                               padding, output_padding, groups, dilation, dtype)
    return _ConvTransposeStep(spec, w.astype(spec.dtype, copy=False),
                              None if b is None else b.astype(spec.dtype, copy=False), nsp)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, algorithm="auto"):
    """:func:`numbaconv.conv_transpose2d` on a Dask array (lazy)."""
    _cpu_only("conv_transpose2d", algorithm)
    step = _conv_transpose_step("conv_transpose2d", input, weight, bias, stride, padding,
                                output_padding, groups, dilation, 2)
    return _batched("conv_transpose2d", input, 2,
                    lambda x: _apply(x, [step], "conv_transpose2d"))


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, *, algorithm="auto"):
    """:func:`numbaconv.conv_transpose1d` on a Dask array (lazy)."""
    _cpu_only("conv_transpose1d", algorithm)
    step = _conv_transpose_step("conv_transpose1d", input, weight, bias, stride, padding,
                                output_padding, groups, dilation, 1)
    return _batched("conv_transpose1d", input, 1,
                    lambda x: _apply(x, [step], "conv_transpose1d"))


def _pool_spec(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    from .pool_spec import pool_spec

    check_float_dtype(op, "input", x.dtype)
    return pool_spec(op, x.shape, kernel_size, stride, padding, dilation, ceil_mode)


def _max_pool(op, nsp, input, kernel_size, stride, padding, dilation, ceil_mode,
              return_indices):
    _no_indices(op, return_indices)
    spec = _pool_spec(op, input, kernel_size, stride, padding, dilation, ceil_mode)
    step = _MaxPoolStep(spec, nsp, input.dtype)
    return _batched(op, input, nsp, lambda x: _apply(x, [step], op))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """:func:`numbaconv.max_pool2d` on a Dask array (lazy; no indices)."""
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """:func:`numbaconv.max_pool1d` on a Dask array (lazy; no indices)."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation,
                     ceil_mode, return_indices)


def _avg_pool(op, nsp, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    from .pool_spec import divisor

    spec = _pool_spec(op, input, kernel_size, stride, padding, 1, ceil_mode)
    step = _AvgPoolStep(spec, nsp, input.dtype, bool(count_include_pad),
                        divisor(op, divisor_override))
    return _batched(op, input, nsp, lambda x: _apply(x, [step], op))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """:func:`numbaconv.avg_pool2d` on a Dask array (lazy)."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """:func:`numbaconv.avg_pool1d` on a Dask array (lazy)."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


def _adaptive(op, nsp, input, output_size, take_max):
    from .pooling import _adaptive_output_size

    check_float_dtype(op, "input", input.dtype)
    if input.ndim not in (nsp + 1, nsp + 2):
        raise ValueError(f"{op}: expected a {nsp + 1}D or {nsp + 2}D input, got {input.ndim}D")
    out_size = _adaptive_output_size(op, output_size, tuple(input.shape[-nsp:]))
    step = _AdaptiveStep(input.shape[-nsp:], out_size, take_max, input.dtype)
    return _batched(op, input, nsp, lambda x: _apply(x, [step], op))


def adaptive_avg_pool2d(input, output_size):
    """:func:`numbaconv.adaptive_avg_pool2d` on a Dask array (lazy)."""
    return _adaptive("adaptive_avg_pool2d", 2, input, output_size, False)


def adaptive_avg_pool1d(input, output_size):
    """:func:`numbaconv.adaptive_avg_pool1d` on a Dask array (lazy)."""
    return _adaptive("adaptive_avg_pool1d", 1, input, output_size, False)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """:func:`numbaconv.adaptive_max_pool2d` on a Dask array (lazy; no indices)."""
    _no_indices("adaptive_max_pool2d", return_indices)
    return _adaptive("adaptive_max_pool2d", 2, input, output_size, True)


def _elementwise(op, input, function):
    """An activation on every chunk (no halo): ``function`` maps a NumPy block."""
    check_float_dtype(op, "input", input.dtype)
    return input.map_blocks(function, dtype=input.dtype, token=op)


def _activation(name):
    """The Dask version of activation ``name``: the in-memory function on every chunk."""
    def on_dask(input, *args, **kwargs):
        import functools
        import inspect

        from . import activations

        kernel = getattr(activations, name)
        bound = inspect.signature(kernel).bind(input, *args, **kwargs)
        if bound.arguments.get("inplace"):
            raise ValueError(f"{name}: inplace=True cannot change a Dask array; use the "
                             f"returned array")
        options = {k: v for k, v in bound.arguments.items() if k != "input"}
        return _elementwise(name, input, functools.partial(kernel, **options))

    on_dask.__name__ = name
    on_dask.__doc__ = f":func:`numbaconv.{name}` on a Dask array, chunk by chunk (lazy)."
    return on_dask


relu = _activation("relu")
relu6 = _activation("relu6")
sigmoid = _activation("sigmoid")
tanh = _activation("tanh")
leaky_relu = _activation("leaky_relu")
hardtanh = _activation("hardtanh")
hardswish = _activation("hardswish")
hardsigmoid = _activation("hardsigmoid")
silu = _activation("silu")
gelu = _activation("gelu")


def _batch_norm_step(op, x, running_mean, running_var, weight, bias, eps):
    """Eval-mode batch norm as a per-channel step (the running statistics' affine map)."""
    from .normalization import batch_norm as batch_norm_in_memory

    channels = x.shape[1]
    params = []
    for name, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is None:
            if name.startswith("running"):
                raise ValueError(f"{op}: on Dask arrays only eval-mode batch norm (the "
                                 f"running statistics) runs; {name} is None")
            params.append(None)
            continue
        value = check_float_array(op, name, value)
        if value.shape != (channels,):
            raise ValueError(f"{op}: {name} must have shape ({channels},), got {value.shape}")
        params.append(value)
    mean, var, w, b = params

    def normalize(block, c0, c1):
        return batch_norm_in_memory(block, mean[c0:c1], var[c0:c1],
                                    None if w is None else w[c0:c1],
                                    None if b is None else b[c0:c1], False, 0.0, eps)

    return _PointwiseStep(x.shape[2:], normalize, x.dtype, per_channel=True)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-05):
    """Eval-mode :func:`numbaconv.batch_norm` on a Dask array, chunk by chunk (lazy).
    ``training=True`` (batch statistics, a reduction over every chunk) is not supported."""
    op = "batch_norm"
    check_float_dtype(op, "input", input.dtype)
    if training:
        raise NotImplementedError(f"{op}: training=True on a Dask array would need the "
                                  f"batch's statistics over every chunk; not supported "
                                  f"(use training=False with running statistics)")
    if input.ndim < 2:
        raise ValueError(f"{op}: expected an input of 2 or more dims, got {input.ndim}D")
    step = _batch_norm_step(op, input, running_mean, running_var, weight, bias, eps)
    if input.ndim == 2:
        return _apply(input[:, :, None], [step], op)[:, :, 0]
    return _apply(input, [step], op)


def linear(input, weight, bias=None):
    """:func:`numbaconv.linear` on a Dask array (..., in_features): the last axis merged
    into one chunk, the others kept as they are (lazy)."""
    op = "linear"
    check_float_dtype(op, "input", input.dtype)
    w = check_float_array(op, "weight", weight)
    b = None if bias is None else check_float_array(op, "bias", bias)
    if w.ndim != 2 or input.ndim < 1 or input.shape[-1] != w.shape[1]:
        raise ValueError(f"{op}: input's last dimension must match weight (out_features, "
                         f"in_features): got input {input.shape}, weight {w.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{op}: bias must have shape ({w.shape[0]},), got {b.shape}")
    dtype = np.result_type(input.dtype, w.dtype, *([] if b is None else [b.dtype]))
    x = input.rechunk({input.ndim - 1: -1})
    return _per_block(x, _Linear(w, b), dtype, x.chunks[:-1] + ((w.shape[0],),), op)


class _Linear:
    """``linear`` with its weights: one graph key, sent to each worker once."""

    def __init__(self, weight, bias):
        self.weight, self.bias, self.threads = weight, bias, task_threads()

    def __call__(self, block):
        from .activations import linear as linear_in_memory

        with _numba_threads(self.threads):
            return linear_in_memory(block, self.weight, self.bias)


def _call_on_block(function, block):
    return function(block)


def _per_block(x, function, dtype, chunks, name):
    """``function(block)`` on every block of ``x``, the function (and what it holds) one
    key of the graph that every task depends on."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    token = tokenize(x.name, vars(function))
    out_name, function_key = f"{name}-{token}", (f"{name}-layers-{token}",)
    layer = {function_key: function}
    ndim = len(chunks)  # (other than x's when every axis but the first is one chunk)
    for index in np.ndindex(*x.numblocks):
        out_index = index if ndim == x.ndim else index[:1] + (0,) * (ndim - 1)
        layer[(out_name,) + out_index] = (_call_on_block, function_key, (x.name,) + index)
    graph = HighLevelGraph.from_collections(out_name, layer, dependencies=[x])
    return da.Array(graph, out_name, chunks, dtype=dtype, meta=np.empty((0,) * ndim, dtype))


def per_batch(model, input):
    """``model`` (any callable of one array, such as an ONNX model from
    ``numbaconv.onnx.load``) on a Dask array, one task per chunk of the batch (first) axis,
    every other axis merged into one chunk: for many images rather than one huge one. The
    model is one key of the graph (its weights sent to each worker once); its output's
    shape is learnt from a call on one image of zeros. Exact: each image runs whole."""
    x = input.rechunk({axis: -1 for axis in range(1, input.ndim)})
    probe = np.asarray(model(np.zeros((1,) + x.shape[1:], x.dtype)))
    if probe.ndim == 0 or probe.shape[0] != 1:
        raise NotImplementedError(
            f"per_batch: the model's output {probe.shape} has no batch axis first; only "
            f"models whose first axis is the batch run on Dask arrays")
    chunks = (x.chunks[0],) + tuple((n,) for n in probe.shape[1:])
    return _per_block(x, _InTask(model, task_threads()), probe.dtype, chunks, "per-batch")


class _InTask:
    """``model(block)`` on the task's Numba threads."""

    def __init__(self, model, threads):
        self.model, self.threads = model, threads

    def __call__(self, block):
        with _numba_threads(self.threads):
            return np.asarray(self.model(block))


# ------------------------------------------------------------------ nn.Sequential

def _module_step(module, shape, dtype):
    """The step running ``module`` on (N, C, *spatial) inputs of ``shape``, or None when it
    cannot be part of a stack (it then runs on its own)."""
    from . import nn

    nsp = len(shape) - 2
    if isinstance(module, (nn.Dropout, nn.Dropout2d, nn.Identity)) and not (
            getattr(module, "training", False) and getattr(module, "p", 0)):
        return _PointwiseStep(shape[2:], lambda x: x, dtype)
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.padding_mode == "zeros" \
            and len(module.kernel_size) == nsp:
        return _conv_step(type(module).__name__, _Shaped(shape, dtype), module.weight,
                          module.bias, module.stride, module.padding, module.dilation,
                          module.groups, module.padding_mode, nsp)
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)) \
            and len(module.kernel_size) == nsp:
        return _conv_transpose_step(type(module).__name__, _Shaped(shape, dtype), module.weight,
                                    module.bias, module.stride, module.padding,
                                    module.output_padding, module.groups, module.dilation, nsp)
    pools = {nn.MaxPool1d: 1, nn.MaxPool2d: 2}
    if type(module) in pools and pools[type(module)] == nsp and not module.return_indices:
        spec = _pool_spec(type(module).__name__, _Shaped(shape, dtype), module.kernel_size,
                          module.stride, module.padding, module.dilation, module.ceil_mode)
        return _MaxPoolStep(spec, nsp, dtype)
    averages = {nn.AvgPool1d: 1, nn.AvgPool2d: 2}
    if type(module) in averages and averages[type(module)] == nsp:
        spec = _pool_spec(type(module).__name__, _Shaped(shape, dtype), module.kernel_size,
                          module.stride, module.padding, 1, module.ceil_mode)
        return _AvgPoolStep(spec, nsp, dtype, module.count_include_pad,
                            getattr(module, "divisor_override", None))
    if isinstance(module, nn.BatchNorm2d if nsp == 2 else nn.BatchNorm1d) \
            and not module.training and module.running_mean is not None:
        return _batch_norm_step(type(module).__name__, _Shaped(shape, dtype),
                                module.running_mean, module.running_var, module.weight,
                                module.bias, module.eps)
    elementwise = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.Hardtanh,
                   nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU)
    if isinstance(module, elementwise):
        return _PointwiseStep(shape[2:], module, dtype)
    return None


class _Shaped:
    """Shape and dtype of a stack's intermediate array (what the spec functions read)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)


def _step_output_shape(step, shape):
    channels = step.out_channels if step.out_channels is not None else shape[1]
    return (shape[0], channels) + tuple(axis.out_length for axis in step.axes)


def sequential(model, input):
    """``model`` (a ``numbaconv.nn.Sequential``) on a Dask array: its runs of layers that
    stack (convolutions with zero padding, transposed convolutions, max/avg pooling, eval
    batch norm, activations, dropout in eval, identity) each as one graph of one task per
    output chunk, the halo composed through the run's layers; other modules on their own
    (``module(x)``). Batched (N, C, *spatial) inputs; others run module by module."""
    x = input
    if x.ndim not in (3, 4):
        for module in model:
            x = module(x)
        return x
    run = []
    shape, dtype = tuple(x.shape), x.dtype

    def flush(x):
        if run:
            x = _apply(x, list(run), "sequential")
            run.clear()
        return x

    for module in model:
        step = _module_step(module, shape, dtype)
        if step is None:
            x = flush(x)
            x = module(x)
            shape, dtype = tuple(x.shape), x.dtype
            continue
        if isinstance(step, _ConvStep) and any(
                getattr(a, "mode", "zeros") != "zeros" for a in step.axes):
            x = flush(x)
        run.append(step)
        shape, dtype = _step_output_shape(step, shape), step.dtype
    return flush(x)
