"""Launching compiled kernels robustly: after a fork, and over a broken JIT cache.

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
"""

import os
import warnings

from numba import njit
from numba.core.caching import NullCache

from ..config import JIT

_forked_from_openmp = False
_twins = {}


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
        _twins.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def launch(kernel):
    """A callable running ``kernel`` (or, in a child forked from an OpenMP-using parent, its
    serial twin) that survives a broken on-disk cache."""
    if _forked_from_openmp:
        twin = _twins.get(kernel)
        if twin is None:
            twin = _twins[kernel] = njit(**dict(JIT, cache=False))(kernel.py_func)
        kernel = twin
    return lambda *args: _call(kernel, args)


def _call(kernel, args):
    try:
        return kernel(*args)
    except Exception as exc:
        if not _raised_by_numba_cache(exc):
            raise
        warnings.warn(
            f"numbaconv: Numba's on-disk cache for {kernel.py_func.__name__} is unreadable "
            f"({type(exc).__name__}: {exc}); compiling it without the cache",
            RuntimeWarning, stacklevel=3)
        kernel._cache = NullCache()
        return kernel(*args)


def _raised_by_numba_cache(exc) -> bool:
    frame = exc.__traceback__
    while frame is not None:
        path = frame.tb_frame.f_code.co_filename.replace(os.sep, "/")
        if path.endswith("numba/core/caching.py"):
            return True
        frame = frame.tb_next
    return False
