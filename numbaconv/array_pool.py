"""Large result arrays from a pool of reused memory blocks.

A fresh array of a few megabytes comes from the operating system as new pages, which
the kernel zeroes as they are first touched: on our machines about 0.12 ms per MiB, as
long as writing the array once more. glibc's ``malloc`` keeps freed blocks for reuse
only below 32 MiB, and gives memory back whenever the top of its heap is free, so a
network's layers kept paying that price: EfficientNet-B0 at batch 8 (38 MiB
activations) spent more than half of its forward pass in page faults (256 ms; 117 ms
with the same blocks reused). onnxruntime keeps an arena for the same reason.

:func:`empty` hands out arrays of :data:`MIN_BYTES` or more backed by pooled blocks.
Each array's ``base`` is a small lease object; when the array and every view of it
are gone, the lease gives its block back (CPython frees it at once, by reference
count), and the next request of that size class takes it again. At most
:func:`limit` bytes of free blocks stay pooled (least recently returned dropped
first); arrays in use are never counted. Pooled arrays behave like any other
C-contiguous, writable, 64-byte aligned NumPy array.

``NUMBACONV_ARRAY_POOL`` sets the limit (``1G``, ``300M``; ``0`` turns pooling off);
:func:`set_limit` changes it at run time and :func:`release` drops the free blocks.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque

import numpy as np

from .config import cache_budget

#: Smaller arrays come from ``np.empty``: malloc reuses them, and a lease (~2 us) would
#: cost more than their pages.
MIN_BYTES = 256 * 1024
ALIGNMENT = 64  # a cache line; the AVX-512 kernels' loads never straddle two

_lock = threading.Lock()
_free: OrderedDict[int, list] = OrderedDict()  # size class -> blocks, least recent first
_free_bytes = 0
# Blocks given back by leases and not yet sorted into _free. A lease's __del__ may run
# inside any allocation, on any thread, even while this thread holds _lock, so it only
# appends here (atomic) and sorts when it can take the lock without waiting.
_returned: deque = deque()


def _default_limit() -> int:
    return cache_budget("NUMBACONV_ARRAY_POOL")


_limit = _default_limit()


def limit() -> int:
    """The most bytes of free blocks the pool keeps."""
    return _limit


def set_limit(nbytes) -> None:
    """Keep at most ``nbytes`` of free blocks (``0``: no pooling; ``None``: the default,
    an eighth of the machine's memory between 256 MiB and 2 GiB, or
    ``NUMBACONV_ARRAY_POOL``)."""
    global _limit
    if nbytes is not None and not (isinstance(nbytes, int) and nbytes >= 0):
        raise ValueError(f"set_limit: nbytes must be a number of bytes >= 0 or None, got "
                         f"{nbytes!r}")
    with _lock:
        _limit = _default_limit() if nbytes is None else nbytes
        _sort_returned()
        _evict()


def release() -> None:
    """Drop every free block (arrays in use keep theirs)."""
    global _free_bytes
    with _lock:
        _sort_returned()
        _free.clear()
        _free_bytes = 0


def pooled_bytes() -> int:
    """Bytes of free blocks the pool holds now."""
    with _lock:
        _sort_returned()
        return _free_bytes


def size_class(nbytes: int) -> int:
    """``nbytes`` rounded up to a multiple of 1/8 to 1/16 of itself (at least a page), so
    that arrays of nearly the same size share blocks and no block is more than 1/8 too
    big for its array."""
    step = 1 << max(12, nbytes.bit_length() - 4)
    return -(-nbytes // step) * step


class _Lease:
    """The ``base`` of a pooled array: it exposes part of a block through NumPy's array
    interface and gives the block back when the last array using it is gone."""

    __slots__ = ("block", "__array_interface__")

    def __init__(self, block, shape, dtype):
        self.block = block
        start = block.ctypes.data
        self.__array_interface__ = {"data": (start + (-start) % ALIGNMENT, False),
                                    "shape": shape, "typestr": dtype.str, "version": 3}

    def __del__(self):
        try:
            _returned.append(self.block)
            if _lock.acquire(blocking=False):
                try:
                    _sort_returned()
                finally:
                    _lock.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown: module globals are gone
            pass


def _sort_returned() -> None:
    """Move the returned blocks into the free lists, within the limit (hold _lock)."""
    global _free_bytes
    while _returned:
        block = _returned.popleft()
        size = block.nbytes - ALIGNMENT
        if size > _limit:
            continue
        blocks = _free.get(size)
        if blocks is None:
            blocks = _free[size] = []
        else:
            _free.move_to_end(size)
        blocks.append(block)
        _free_bytes += size
        _evict()


def _evict() -> None:
    """Drop the least recently returned size classes' blocks until within the limit."""
    global _free_bytes
    while _free_bytes > _limit and _free:
        size, blocks = next(iter(_free.items()))
        blocks.pop()
        _free_bytes -= size
        if not blocks:
            del _free[size]


def empty(shape, dtype=np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array, as ``np.empty(shape, dtype)``, its memory
    reused from arrays no longer in use when it is :data:`MIN_BYTES` or larger."""
    global _free_bytes
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape) if not isinstance(shape, int) else (int(shape),)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or _limit == 0:
        return np.empty(shape, dtype)
    size = size_class(nbytes)
    with _lock:
        _sort_returned()
        blocks = _free.get(size)
        if blocks:
            block = blocks.pop()
            _free_bytes -= size
            if not blocks:
                del _free[size]
        else:
            block = None
    if block is None:
        block = np.empty(size + ALIGNMENT, np.uint8)
    return np.asarray(_Lease(block, shape, dtype))


def empty_like(x: np.ndarray) -> np.ndarray:
    """:func:`empty` of ``x``'s shape and dtype (C order)."""
    return empty(x.shape, x.dtype)
