"""The one way CPU kernels are compiled and launched: :func:`parallel_kernel`.

Every ``@njit(parallel=True)`` entry point of numbaconv (convolutions, pooling, and
whatever comes later) is declared with ``@parallel_kernel``; calling it goes through
:meth:`Kernel.__call__`, which handles three things no caller should have to remember:

Forks: Numba's parallel kernels run on its threading layer; with the usual GNU OpenMP layer a
process forked from a parent that already ran parallel code is killed as soon as it
starts a parallel region ("fork() called from a process already using GNU OpenMP").
``multiprocessing``'s default start method on Linux is fork, so numbaconv notices such
children (``os.register_at_fork``) and runs them on serial twins of its kernels:
the same Python functions compiled without ``parallel=True`` (``prange`` then acts as
``range``). The twins are compiled in the child on first use, without the disk cache
(which does not tell the two builds apart); ``spawn`` or ``forkserver`` children keep
the parallel kernels.

Broken caches: Numba keeps compiled kernels on disk; a corrupt cache file there makes
Numba raise while loading it. A kernel whose cache fails is warned about once and
recompiled without the disk cache; the call goes on.

Compiling: the first call of a kernel in a new environment compiles it (seconds); a
:class:`~numbaconv.errors.CompileWarning` says so before the work starts, once per
kernel and process, and the ``numbaconv`` logger records how long each compile took
(``logging.getLogger("numbaconv").setLevel("INFO")`` shows it). Calls served from the
disk cache say nothing.
"""

import logging
import os
import threading
import time
import warnings

from numba import njit
from numba.core import event
from numba.core.caching import NullCache

from ..config import JIT, JIT_PARALLEL
from ..errors import CompileWarning

log = logging.getLogger("numbaconv")

_forked_from_openmp = False


class Kernel:
    """A parallel ``@njit`` kernel behind numbaconv's launch path (see the module docstring).

    ``dispatcher`` is the Numba dispatcher (``py_func``, ``signatures``, ``inspect_asm``...).
    """

    def __init__(self, function):
        self.dispatcher = njit(**JIT_PARALLEL)(function)
        self.py_func = function
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__
        self._serial_twin = None

    def __repr__(self) -> str:
        return f"<numbaconv kernel {self.py_func.__module__}.{self.__name__}>"

    def __call__(self, *args):
        kernel = self.dispatcher
        if _forked_from_openmp:
            if self._serial_twin is None:
                self._serial_twin = njit(**dict(JIT, cache=False))(self.py_func)
            kernel = self._serial_twin
        try:
            return kernel(*args)
        except Exception as exc:
            if not _raised_by_numba_cache(exc):
                raise
            warnings.warn(
                f"numbaconv: Numba's on-disk cache for {self.__name__} is unreadable "
                f"({type(exc).__name__}: {exc}); compiling it without the cache",
                RuntimeWarning, stacklevel=2)
            kernel._cache = NullCache()
            return kernel(*args)


def parallel_kernel(function) -> Kernel:
    """Decorator: ``function`` compiled with ``config.JIT_PARALLEL``, launched by :class:`Kernel`."""
    return Kernel(function)


def _threading_layer():
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process
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
#: by kernel: what the warning promises. Kernels not listed compile in a few seconds.
COMPILE_SECONDS = {
    "winograd_conv2d": 8, "winograd_conv2d_staged": 8, "gemm_conv2d": 5, "tiled_conv2d": 3,
    "depthwise3x3_conv2d": 3, "depthwise3x3_stacked": 3, "depthwise_channels_last": 3,
}

_announced = set()
_compiling = threading.local()


def _describe(data) -> tuple:
    """(kernel name, dtype names) of a ``numba:compile`` event, or None for other code."""
    dispatcher = data.get("dispatcher")
    function = getattr(dispatcher, "py_func", None)
    if function is None or not function.__module__.startswith("numbaconv."):
        return None
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
        seconds = COMPILE_SECONDS.get(name, 2)
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
