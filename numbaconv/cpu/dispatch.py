"""The one way CPU kernels are compiled and launched: :func:`parallel_kernel`.

Every parallel entry point of numbaconv (convolutions, pooling, and whatever comes later)
is a plain serial function ``kernel(..., worker, workers) -> int`` that does share
``worker`` of ``workers`` of the work (usually a run of consecutive items: :func:`share`)
and returns a count (of non-finite outputs, invalid indices...; 0 when it counts
nothing), declared with ``@parallel_kernel``. Calling the :class:`Kernel` runs every
share at once on Numba's threads (``numba.get_num_threads()`` of them, or fewer when
the caller says so) and returns the sum of the counts.

Why not ``@njit(parallel=True)`` on each kernel: Numba compiles a parallel loop's body
two extra times (the body is typed again, built into a separate "gufunc", whose code is
then linked into the kernel and optimised and compiled to machine code once more),
which made the first call of the Winograd kernel compile for 30 s on 2 cores. Here each
kernel is compiled once, as a serial function (``nogil``, cached on disk), and one small
parallel loop, :func:`_parallel_shell`, calls it through its address: the loop is
compiled once per kernel signature in well under a second and links none of the
kernel's code. The launch is Numba's own (its threading layer), a few microseconds.

Errors: a parallel region cannot raise (Numba runs a loop holding a ``raise`` serially),
so the launcher counts the shares that failed and runs them again serially, where the
error is raised to the caller as usual.

Small calls: inside a ``config.one_share_for`` block for little work (the planner and
pooling open one per call) every kernel runs as one share on the calling thread: waking
Numba's threads would cost about as much as the work.

Forks: with the usual GNU OpenMP threading layer a process forked from a parent that
already ran a parallel region is killed as soon as it starts one ("fork() called from
a process already using GNU OpenMP"). ``multiprocessing``'s default start method on
Linux is fork, so numbaconv notices such children (``os.register_at_fork``) and runs
the shares there one after the other, without a parallel region.

Threads: the omp and tbb layers run parallel regions from several Python threads at
once; the fallback "workqueue" layer aborts instead, so under it launches are
serialised (the layer is known once the first parallel region ran).

Broken caches: Numba keeps compiled kernels on disk; a corrupt cache file there makes
Numba raise while loading it. A kernel whose cache fails is warned about once and
recompiled without the disk cache; the call goes on.

Compiling: the first call of a kernel in a new environment compiles it (seconds); a
:class:`~numbaconv.errors.CompileWarning` says so before the work starts, once per
kernel and process, and the ``numbaconv`` logger records how long each compile took
(``logging.getLogger("numbaconv").setLevel("INFO")`` shows it). Calls served from the
disk cache say nothing.
"""

import contextlib
import logging
import os
import threading
import time
import warnings

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils, event
from numba._dispatcher import compute_fingerprint
from numba.core.caching import NullCache
from numba.extending import intrinsic

from ..config import JIT, JIT_PARALLEL, small_work
from ..errors import CompileWarning

log = logging.getLogger("numbaconv")

_forked_from_openmp = False


class Kernel:
    """A serial ``@njit`` kernel run as ``workers`` shares at once (see the module docstring).

    ``dispatcher`` is the Numba dispatcher (``py_func``, ``signatures``, ``inspect_asm``...).
    """

    def __init__(self, function):
        self.dispatcher = njit(**JIT)(function)
        self.py_func = function
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__
        self._addresses = {}  # argument kinds -> address of the compiled share function

    def __repr__(self) -> str:
        return f"<numbaconv kernel {self.py_func.__module__}.{self.__name__}>"

    def __call__(self, *args, workers=None):
        """Run every share of the kernel on ``args``; returns the sum of their counts.

        ``workers``: at most this many shares (default and cap: ``numba.get_num_threads()``,
        and 1 inside a ``config.one_share_for`` block for small work).
        """
        if workers == 1 or small_work():
            count = 1
        else:
            threads = numba.get_num_threads()
            count = threads if workers is None else max(1, min(int(workers), threads))
        try:  # Numba's own type key, computed in C: a few hundred ns for all the arguments
            key = compute_fingerprint(args)
        except NotImplementedError:  # a value Numba fingerprints the slow way
            key = tuple(map(_kind, args))
        address = self._addresses.get(key)
        if address is None:
            address = self._addresses[key] = _despite_broken_cache(
                self.dispatcher, self.__name__, lambda: self._compile(args))
        if count == 1 or _forked_from_openmp:
            entry = _serial_entries.get(key)
            if entry is not None:
                return entry(address, args, count)
            total = _despite_broken_cache(_serial_shell, "the serial launcher",
                                          lambda: _serial_shell(address, args, count))
            _serial_entries[key] = _serial_shell.overloads[
                (types.int64, _serial_shell.typeof_pyval(args), types.int64)].entry_point
            return total
        with _launch_guard():
            total, failed = _despite_broken_cache(
                _parallel_shell, "the parallel launcher",
                lambda: _parallel_shell(address, args, count))
        if failed:  # run the shares again, serially, for the error to be raised here
            _serial_shell(address, args, count)
            raise RuntimeError(f"numbaconv: {failed} share(s) of {self.__name__} failed in "
                               f"parallel but not when run again serially")
        return total

    def _compile(self, args) -> int:
        """The machine-code address of the share function for these arguments' types,
        compiled (or loaded from the disk cache) on first use."""
        dispatcher = self.dispatcher
        arg_types = tuple(_canonical(dispatcher.typeof_pyval(a)) for a in args)
        arg_types += (types.int64, types.int64)
        dispatcher.compile(types.int64(*arg_types))  # the count is returned as an int64
        result = dispatcher.overloads[arg_types]
        return result.library.get_pointer_to_function(result.fndesc.llvm_func_name)


def _despite_broken_cache(dispatcher, name: str, call):
    """``call()``; if Numba's disk cache of ``dispatcher`` breaks it, warn and retry
    with that cache switched off (the dispatcher then compiles)."""
    try:
        return call()
    except Exception as exc:
        if not _raised_by_numba_cache(exc):
            raise
        warnings.warn(
            f"numbaconv: Numba's on-disk cache for {name} is unreadable "
            f"({type(exc).__name__}: {exc}); compiling it without the cache",
            RuntimeWarning, stacklevel=4)
        dispatcher._cache = NullCache()
        return call()


def _canonical(numba_type):
    """The type a kernel is compiled for: arrays as writeable and aligned ones.

    Kernels never write their inputs, and both kinds are passed alike, so one compiled
    kernel serves read-only inputs too instead of a second copy compiled for them. Numba
    types a view whose elements are not aligned to their size as another type only to
    drop alignment hints from its loads; the ISAs Numba compiles for (x86-64, AArch64,
    POWER) load such elements and vectors without fault, and the key under which a
    compiled kernel is found (Numba's fingerprint) does not tell them apart either.
    """
    if isinstance(numba_type, types.Array) and not (numba_type.mutable and numba_type.aligned):
        return types.Array(numba_type.dtype, numba_type.ndim, numba_type.layout)
    return numba_type


def _kind(value):
    """What decides a kernel's compiled argument type (the key of Kernel._addresses for
    arguments Numba cannot fingerprint; see :func:`_canonical`)."""
    if isinstance(value, np.ndarray):  # C_CONTIGUOUS | F_CONTIGUOUS | ALIGNED
        return value.dtype.num, value.ndim, value.flags.num & 0x103
    if isinstance(value, tuple):
        return tuple(map(_kind, value))
    return type(value)


@njit(inline="always")
def share(worker, workers, items):
    """(first, stop): the items of share ``worker`` of ``workers``, consecutive ones.

    Kernels split their jobs this way rather than taking every ``workers``-th: two
    threads writing interleaved small items (planes of a few KB, rows) fight over the
    cache lines at the items' borders and break each other's prefetch streams (Zen 4,
    2 threads, max_pool2d's 2x2 gradient on 64 x 6 x 28 x 28: 0.43 ms interleaved,
    0.16 consecutive, 0.27 on one thread)."""
    return worker * items // workers, (worker + 1) * items // workers


def parallel_kernel(function) -> Kernel:
    """Decorator: ``function(..., worker, workers) -> int`` compiled with ``config.JIT``
    and run in shares by :class:`Kernel`."""
    return Kernel(function)


def _share_call(propagate: bool):
    """An intrinsic passing args + (worker, workers) to the Numba-compiled function at
    ``address`` (which returns an int64), by Numba's own calling convention.

    With ``propagate`` an error raised by the share is raised by the caller. Without, it
    returns (count, failed) instead: a parallel region cannot raise (Numba would run a
    loop with a ``raise`` serially), so the launcher reports failed shares and the
    caller re-runs them serially to raise the error itself.
    """

    @intrinsic
    def call_share(typingctx, address, args, worker, workers):
        if not isinstance(args, types.BaseTuple):
            return None
        argument_types = tuple(map(_canonical, args.types)) + (types.int64, types.int64)
        returned = types.int64 if propagate else types.UniTuple(types.int64, 2)

        def codegen(context, builder, signature, llvm_args):
            address_v, args_v, worker_v, workers_v = llvm_args
            function_type = context.call_conv.get_function_type(types.int64, argument_types)
            callee = builder.inttoptr(address_v, function_type.as_pointer())
            values = cgutils.unpack_tuple(builder, args_v, len(args.types))
            status, result = context.call_conv.call_function(
                builder, callee, types.int64, argument_types, values + [worker_v, workers_v])
            if propagate:
                with cgutils.if_unlikely(builder, status.is_error):
                    context.call_conv.return_status_propagate(builder, status)
                return result
            failed = builder.zext(status.is_error, result.type)
            return context.make_tuple(builder, returned, [result, failed])

        return returned(address, args, worker, workers), codegen

    return call_share


_call_share = _share_call(propagate=True)
_try_share = _share_call(propagate=False)


#: Argument keys -> the compiled _serial_shell for them, called directly: its dispatcher
#: would type the arguments again (0.25 of a small call's 0.65 us).
_serial_entries = {}


@njit(**JIT)
def _serial_shell(address, args, workers):
    """The shares one after the other, on the calling thread; errors propagate."""
    total = 0
    for worker in range(workers):
        total += _call_share(address, args, worker, workers)
    return total


@njit(**JIT_PARALLEL)
def _parallel_shell(address, args, workers):
    """The shares at once on Numba's threads: (sum of the counts, shares that failed)."""
    total = 0
    failed = 0
    for worker in prange(workers):
        count, error = _try_share(address, args, np.int64(worker), workers)
        total += count
        failed += error
    return total, failed


_workqueue_lock = threading.Lock()
_concurrent_layer = False  # set once a parallel region ran on a layer that allows it


def _launch_guard():
    """A lock when Numba's threading layer cannot run parallel regions concurrently: the
    fallback "workqueue" layer aborts the process instead. Until the first parallel
    region has run the layer is unknown, so that first launch is serialised too."""
    global _concurrent_layer
    if _concurrent_layer:  # the layer never changes once chosen
        return contextlib.nullcontext()
    layer = _threading_layer()
    if layer is None:  # no parallel region has run yet
        return _workqueue_lock
    _concurrent_layer = layer != "workqueue"
    return _workqueue_lock if layer == "workqueue" else contextlib.nullcontext()


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run in this process
        return None


def _after_fork_in_child():
    global _forked_from_openmp
    if _threading_layer() == "omp":
        _forked_from_openmp = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _raised_by_numba_cache(exc) -> bool:
    frame = exc.__traceback__
    while frame is not None:
        path = frame.tb_frame.f_code.co_filename.replace(os.sep, "/")
        if path.endswith("numba/core/caching.py"):
            return True
        frame = frame.tb_next
    return False


# --------------------------------------------------------------------------- saying so

#: Seconds a first compile took on the 2-core reference machine (AVX-512, empty cache),
#: by kernel: what the notice promises. Kernels not listed compile in about a second.
COMPILE_SECONDS = {
    "winograd_conv2d": 9, "winograd_input_stage": 3, "winograd_output_stage": 4,
    "gemm_conv2d": 6, "direct_conv2d": 3, "depthwise_conv2d": 4, "depthwise3x3_conv2d": 3,
    "pointwise_conv2d": 2, "tap_tiles": 2, "pad_phase_split": 2, "max_pool2d_rows": 3,
    "avg_pool2d_rows": 2,
}

_announced = set()
_compiling = threading.local()


def _describe(data) -> tuple:
    """(kernel name, dtype names) of a ``numba:compile`` event, or None for other code."""
    dispatcher = data.get("dispatcher")
    function = getattr(dispatcher, "py_func", None)
    if function is None or not function.__module__.startswith("numbaconv.") \
            or function.__name__.startswith("_"):  # helpers, and the launchers: < 1 s
        return None
    if isinstance(getattr(dispatcher, "_cache", None), NullCache):
        return None  # a callee (compiled into its callers' cache entries), or no disk cache
    dtypes = sorted({str(getattr(a, "dtype", "")) for a in data.get("args", ())} - {""})
    return function.__name__, "/".join(d for d in dtypes if d.startswith("float")) or "scalar"


class _CompileAnnouncer(event.Listener):
    """Warns when a numbaconv kernel starts compiling, logs how long it took."""

    def on_start(self, ev):
        depth = getattr(_compiling, "depth", 0)
        _compiling.depth = depth + 1
        described = _describe(ev.data)
        if depth or described is None:  # callees compile inside their caller: one message
            return
        _compiling.started = time.perf_counter()
        name, dtypes = described
        if name in _announced:
            return
        _announced.add(name)
        seconds = COMPILE_SECONDS.get(name, 1)
        warnings.warn(
            f"numbaconv: compiling {name} ({dtypes}) for this CPU, about {seconds} s on 2 "
            f"cores, once per environment (then cached on disk; `python -m numbaconv compile` "
            f"compiles the common kernels ahead of time)",
            CompileWarning, stacklevel=_user_stacklevel())

    def on_end(self, ev):
        _compiling.depth = getattr(_compiling, "depth", 1) - 1
        described = _describe(ev.data)
        if _compiling.depth == 0 and described is not None:
            log.info("compiled %s (%s) in %.1f s", described[0], described[1],
                     time.perf_counter() - getattr(_compiling, "started", time.perf_counter()))


def _user_stacklevel() -> int:
    """The stack level of the first frame outside numbaconv and Numba (the user's call)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None:
        path = frame.f_code.co_filename.replace(os.sep, "/")
        if not any(part in path for part in ("/numbaconv/", "/numba/", "/contextlib.py")):
            return level
        frame, level = frame.f_back, level + 1
    return 1


event.register("numba:compile", _CompileAnnouncer())
