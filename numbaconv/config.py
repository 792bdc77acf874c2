"""One place for the JIT options and run-time switches every kernel shares.

Environment variables (read once, at import):

``NUMBACONV_FASTMATH``  ``1`` (default) lets LLVM reassociate and contract floating-point
    sums, which it needs to vectorise reductions and use FMA; ``0`` turns it off. The
    no-NaN/no-inf flags are never used: NaN and inf must propagate as they do in torch.
``NUMBACONV_CACHE``     ``1`` (default) keeps compiled kernels on disk (Numba's
    ``cache=True``; the directory follows ``NUMBA_CACHE_DIR``), ``0`` disables it
    (so does ``NUMBACONV_FASTMATH=0``).
``NUMBACONV_AUTOTUNE``  ``1`` makes ``algorithm="auto"`` autotune (see ``autotune``);
    ``0`` (default) keeps the deterministic rule.
``NUMBACONV_CACHE_DIR`` where the autotune decisions are kept (see ``autotune``).
``NUMBACONV_MEMORY_LIMIT`` the most memory one call may need (output plus scratch)
    before it raises ``MemoryError`` instead of allocating: bytes (``4000000000``), with a
    unit (``512M``, ``8G``), or a fraction of the memory available at the time of the
    call (``0.5``). Default: 0.8 of available memory. Also settable at run time through
    :func:`set_memory_limit`.
``NUMBACONV_WEIGHT_CACHE`` bytes Winograd's transformed-weight cache may hold (``1G``,
    ``300M``; ``0`` turns it off). Default: an eighth of the machine's memory, between
    256 MiB and 2 GiB (see ``cpu.weight_cache``).
``NUMBACONV_ARRAY_POOL`` bytes of freed result arrays kept for reuse (``1G``; ``0`` turns
    the pool off). Default as the weight cache's (see ``array_pool``).
"""

import os
import sys
import threading
import time


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() not in ("0", "false", "no", "")


# Not "nsz": together with "reassoc" it let LLVM fold isfinite() checks to a constant
# (measured with numba 0.68 / LLVM 20), and the Winograd kernels count non-finite outputs.
FASTMATH = {"contract", "reassoc"} if _flag("NUMBACONV_FASTMATH", True) else False
# Numba's on-disk cache does not key on compile options: kernels compiled with other
# fastmath flags must not be written to (or read from) it.
CACHE = _flag("NUMBACONV_CACHE", True) and _flag("NUMBACONV_FASTMATH", True)
AUTOTUNE = _flag("NUMBACONV_AUTOTUNE", False)

#: Options for the serial helpers and for the parallel kernels.
JIT = dict(cache=CACHE, fastmath=FASTMATH, nogil=True, error_model="numpy")
JIT_PARALLEL = dict(JIT, parallel=True)


#: The machine's logical CPUs, the most threads a call may use (workspace estimates): read
#: once, as os.cpu_count() reads a file on Linux on every call (9 us measured).
CPU_COUNT = os.cpu_count() or 1


def threads() -> int:
    """The threads the next CPU kernel will run on: Numba's setting once Numba is loaded
    (``numba.set_num_threads``), else what it will start with."""
    numba = sys.modules.get("numba")
    if numba is not None:
        return numba.get_num_threads()
    return int(os.environ.get("NUMBA_NUM_THREADS") or CPU_COUNT)


# --------------------------------------------------------------------------- small calls

#: Work (multiply-adds, or values read) below which a call's kernels run on the calling
#: thread alone: waking Numba's threads and gathering them costs about as much as doing
#: it (a squeeze-and-excitation 1x1 convolution on a 1x1 image is ~250 multiply-adds).
SMALL_WORK = 250_000
#: Work of one value read by a memory-bound kernel (pooling, unpooling), in multiply-adds
#: of the matrix products: 0.5-1 ns a value read by the pooling kernels against 0.01-0.02
#: ns a multiply-add (measured on 2 cores, AVX-512). Densenet's 2x2 average pooling of
#: 512 x 14x14 (100k values) took 98 us on one thread, 52 us on two.
WORK_PER_VALUE_READ = 32
_small_work = threading.local()


class one_share_for:
    """A block (``with one_share_for(work):``) whose kernels run as one share on the
    calling thread when ``work`` (about the multiply-adds or values read of the call) is
    below ``SMALL_WORK``. A class rather than a generator: it is entered on every call,
    and this costs a third of contextlib's microsecond."""

    __slots__ = ("_sets",)

    def __init__(self, work: int):
        self._sets = work < SMALL_WORK and not small_work()

    def __enter__(self):
        if self._sets:
            _small_work.active = True

    def __exit__(self, *exc):
        if self._sets:
            _small_work.active = False


def small_work() -> bool:
    """True inside a :func:`one_share_for` block for small work (on this thread)."""
    return getattr(_small_work, "active", False)


# --------------------------------------------------------------------------- training

_fresh_weights = threading.local()


class fresh_weights:
    """A block (``with fresh_weights():``) in which every call's weights are new, as in a
    training step, which updates them all: transforms of the weights (Winograd's, the
    regrouped ones of transposed convolutions) are computed for the call and not kept,
    and the planner counts their cost (``planner.WINOGRAD_FRESH_MIN_TILES``)."""

    def __enter__(self):
        self._previous = weights_are_fresh()
        _fresh_weights.active = True

    def __exit__(self, *exc):
        _fresh_weights.active = self._previous


def weights_are_fresh() -> bool:
    """True inside a :class:`fresh_weights` block (on this thread)."""
    return getattr(_fresh_weights, "active", False)


# --------------------------------------------------------------------------- BLAS threads

_blas = None  # threadpoolctl's controllers of the loaded BLAS libraries, once looked up


def _blas_libraries() -> list:
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # (a dependency; without it BLAS keeps its threads)
            _blas = []
        else:
            _blas = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _blas


class single_threaded_blas:
    """A block (``with single_threaded_blas():``) whose BLAS calls (NumPy's matmul, SciPy's)
    run on the calling thread. OpenBLAS's own worker threads keep spinning on the cores
    for a long while after each multi-threaded call and slow Numba's threads in the next
    layers: a ResNet-18 forward pass (ending in a Linear layer) took 44 ms at batch 1 with
    them, 20 ms without (torch 25 ms; 166 and 124 ms at batch 8, torch 167). The limit
    is set for the block and restored after it (a few microseconds)."""

    __slots__ = ("_saved",)

    def __enter__(self):
        self._saved = [(lib, lib.num_threads) for lib in _blas_libraries()]
        for lib, threads in self._saved:
            if threads != 1:
                lib.set_num_threads(1)

    def __exit__(self, *exc):
        for lib, threads in self._saved:
            if threads != 1:
                lib.set_num_threads(threads)


# --------------------------------------------------------------------------- memory

_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
DEFAULT_MEMORY_FRACTION = 0.8
_memory_limit_override = None
_available_cache = (0.0, 0)  # (time read, bytes)


def parse_memory_limit(text: str):
    """'8G' / '512M' / '123456' -> bytes (int); '0.5' -> a fraction of available memory (float)."""
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in _UNITS:
        return int(float(text[:-1]) * _UNITS[text[-1]])
    value = float(text)
    if 0 < value <= 1 and ("." in text or value < 1):
        return value
    return int(value)


def cache_budget(variable: str) -> int:
    """Bytes a cache of reusable memory may keep: the environment variable ``variable``
    (``1G``, ``300M``; ``0``: none), else an eighth of the machine's memory, between 256
    MiB and 2 GiB."""
    text = os.environ.get(variable)
    if text:
        return int(parse_memory_limit(text))
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 4 << 30
    return int(min(max(total // 8, 256 << 20), 2 << 30))


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux), re-read at most once a second."""
    global _available_cache
    read_at, value = _available_cache
    if time.monotonic() - read_at < 1.0 and value:
        return value
    value = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    value = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if not value:
        try:
            value = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            value = 1 << 62  # unknown: do not guard
    _available_cache = (time.monotonic(), value)
    return value


def set_memory_limit(limit) -> None:
    """Bytes (int), a fraction of available memory (float in (0, 1]), or None for the default."""
    global _memory_limit_override
    if limit is not None and not (isinstance(limit, (int, float)) and limit > 0):
        raise ValueError(f"set_memory_limit: limit must be a positive number of bytes, a "
                         f"fraction in (0, 1] or None, got {limit!r}")
    _memory_limit_override = limit


def _environment_lookup(name: str):
    """A function returning the environment variable ``name`` (or None) as it is now.

    ``os.environ.get`` of an unset variable costs 0.7 us (a KeyError raised and caught),
    and every call of every layer reads NUMBACONV_MEMORY_LIMIT: this reads CPython's
    ``os.environ`` mapping directly (the same data, changes included), 0.05 us.
    """
    data = getattr(os.environ, "_data", None)
    encode, decode = (getattr(os.environ, attr, None) for attr in ("encodekey", "decodevalue"))
    if not isinstance(data, dict) or encode is None or decode is None:
        return lambda: os.environ.get(name)
    key = encode(name)

    def lookup():
        value = data.get(key)
        return None if value is None else decode(value)
    return lookup


_memory_limit_text = _environment_lookup("NUMBACONV_MEMORY_LIMIT")


def memory_error(subject: str, needed: int) -> MemoryError:
    """The MemoryError of a call that would need ``needed`` bytes, more than the limit;
    ``subject`` names it ("conv2d: algorithm 'gemm'")."""
    gib = 2**30
    return MemoryError(
        f"{subject} would need {needed / gib:.3g} GiB (output and scratch), more than the "
        f"memory limit of {memory_limit() / gib:.3g} GiB; lower the batch size, or raise the "
        f"limit with NUMBACONV_MEMORY_LIMIT or numbaconv.set_memory_limit()")


def memory_limit() -> int:
    """The current per-call memory limit in bytes (see NUMBACONV_MEMORY_LIMIT)."""
    limit = _memory_limit_override
    if limit is None:
        text = _memory_limit_text()
        limit = parse_memory_limit(text) if text else DEFAULT_MEMORY_FRACTION
    if isinstance(limit, float):
        return int(limit * available_memory())
    return int(limit)
