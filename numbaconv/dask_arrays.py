"""numbaconv on Dask arrays: lazy, chunked, and exact at every chunk border.

The public functions of numbaconv (``conv1d``, ``conv2d``, ``conv_transpose1d/2d``, the
pooling functions, the activations, eval-mode ``batch_norm`` and ``linear``) and
``numbaconv.nn.Sequential`` accept a ``dask.array.Array`` and return a lazy one; the
functions here are what they call. Nothing is computed until the result is (``.compute()``,
``.to_zarr()``, ``client.compute``...), on whatever scheduler Dask is told to use: threads,
processes, or a ``dask.distributed`` cluster.

How a chunk is computed exactly
-------------------------------
Each output chunk is one task (what it runs: :mod:`numbaconv.dask_tiles`). Along each
spatial axis the layer's spec says which input positions an output range reads (a window
op: ``o * stride - padding + t * dilation`` for taps ``t``; a transposed convolution the
inverse; adaptive pooling its own windows). The task gathers exactly those positions
from the input chunks that hold them (however small the chunks: a halo may span
several), puts the layer's padding only where the window leaves the array
(``padding_mode`` too: reflect, replicate and circular read the positions torch would),
and runs the in-memory kernel with no padding of its own on that region. The output is
the in-memory call's: bit for bit where a convolution runs Winograd (the tasks run it
too, on ranges aligned to its output tiles), else to float rounding (another algorithm
may suit the tile's size).

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
from .dask_tiles import (AdaptiveStep, AvgPoolStep, ConvStep, ConvTransposeStep, MaxPoolStep,
                         PointwiseStep)
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
    align = axis.align
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
        align = steps[-1].axes[d].align
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
    return ConvStep(spec, w.astype(spec.dtype, copy=False),
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
    return ConvTransposeStep(spec, w.astype(spec.dtype, copy=False),
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
    step = MaxPoolStep(spec, nsp, input.dtype)
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
    step = AvgPoolStep(spec, nsp, input.dtype, bool(count_include_pad),
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
    step = AdaptiveStep(input.shape[-nsp:], out_size, take_max, input.dtype)
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

    return PointwiseStep(x.shape[2:], normalize, x.dtype, per_channel=True)


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
        return PointwiseStep(shape[2:], lambda x: x, dtype)
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
        return MaxPoolStep(spec, nsp, dtype)
    averages = {nn.AvgPool1d: 1, nn.AvgPool2d: 2}
    if type(module) in averages and averages[type(module)] == nsp:
        spec = _pool_spec(type(module).__name__, _Shaped(shape, dtype), module.kernel_size,
                          module.stride, module.padding, 1, module.ceil_mode)
        return AvgPoolStep(spec, nsp, dtype, module.count_include_pad,
                            getattr(module, "divisor_override", None))
    if isinstance(module, nn.BatchNorm2d if nsp == 2 else nn.BatchNorm1d) \
            and not module.training and module.running_mean is not None:
        return _batch_norm_step(type(module).__name__, _Shaped(shape, dtype),
                                module.running_mean, module.running_var, module.weight,
                                module.bias, module.eps)
    elementwise = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.Hardtanh,
                   nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU)
    if isinstance(module, elementwise):
        return PointwiseStep(shape[2:], module, dtype)
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
        if isinstance(step, ConvStep) and any(
                getattr(a, "mode", "zeros") != "zeros" for a in step.axes):
            x = flush(x)
        run.append(step)
        shape, dtype = _step_output_shape(step, shape), step.dtype
    return flush(x)
