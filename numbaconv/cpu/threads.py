"""Which compiled kernel to launch: the parallel one, or its serial twin after a fork.

Numba's parallel kernels run on its threading layer; with the usual GNU OpenMP layer a
process forked from a parent that already ran parallel code is killed as soon as it
starts a parallel region ("fork() called from a process already using GNU OpenMP").
``multiprocessing``'s default start method on Linux is fork, so numbaconv notices such
children (``os.register_at_fork``) and runs them on serial twins of its kernels:
the same Python functions compiled without ``parallel=True`` (``prange`` then acts as
``range``). The twins are compiled in the child on first use, without the disk cache
(which does not tell the two builds apart); ``spawn`` or ``forkserver`` children keep
the parallel kernels.
"""

import os

from numba import njit

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
    """``kernel`` itself, or in a child forked from an OpenMP-using parent its serial twin."""
    if not _forked_from_openmp:
        return kernel
    twin = _twins.get(kernel)
    if twin is None:
        twin = _twins[kernel] = njit(**dict(JIT, cache=False))(kernel.py_func)
    return twin


def serial_in_this_process() -> bool:
    """True when kernels run serially because this process was forked (see module doc)."""
    return _forked_from_openmp
