"""Keep BLAS single-threaded while numbaconv's kernels run.

numbaconv parallelises with Numba's threads only and calls BLAS (``np.dot`` inside
``@njit``, which goes to SciPy's OpenBLAS) from within those threads, one matrix
product per thread. Letting OpenBLAS start threads of its own as well oversubscribes
the cores: each pool spin-waits after its work and steals the cores the other one
needs next; measured on 2 cores this made a 1 ms layer take 4-100 ms. So while a
kernel runs, SciPy's OpenBLAS is set to one thread, and restored afterwards.

If SciPy's BLAS is not an OpenBLAS we can reach (another BLAS vendor), nothing is
changed: results stay correct, only speed may suffer.
"""

import contextlib
import ctypes
import threading

_lock = threading.Lock()
_active = 0
_saved = None
_functions = None  # (get, set) or () when unavailable


def _openblas_functions():
    global _functions
    if _functions is None:
        _functions = ()
        import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS)

        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
        except OSError:
            paths = set()
        for path in sorted(paths):
            if "scipy" not in path:
                continue
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_openblas", "openblas"):
                get = getattr(lib, f"{prefix}_get_num_threads", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads", None)
                if get is not None and set_ is not None:
                    get.restype = ctypes.c_int
                    set_.argtypes = [ctypes.c_int]
                    _functions = (get, set_)
                    return _functions
    return _functions


@contextlib.contextmanager
def single_threaded_blas():
    """Within the block SciPy's OpenBLAS runs each call on the calling thread only."""
    global _active, _saved
    functions = _openblas_functions()
    if not functions:
        yield
        return
    get, set_ = functions
    with _lock:
        if _active == 0:
            _saved = get()
            set_(1)
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                set_(_saved)
