"""Scratch arrays reused from call to call, one set per calling thread.

Large temporaries (padded inputs, Winograd's transform-domain arrays) freshly
allocated on every call come back from the OS as new pages, and faulting them in
cost more than the arithmetic on mid-sized layers (measured: a 6 ms Winograd layer
took 13 ms). Each Python thread therefore keeps its own buffers and grows them as
needed; threads never share one, so concurrent calls stay independent.
``release()`` frees the calling thread's buffers.
"""

import math
import threading

import numpy as np

_local = threading.local()


#: Scratch arrays start on a cache line (64 bytes), as AVX-512 vectors are wide: a kernel
#: whose rows are whole vectors then never loads one across two lines.
ALIGNMENT = 64


def scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape``, 64-byte aligned, reusing this
    thread's buffer ``name``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    pool = _local.__dict__.setdefault("pool", {})
    buffer = pool.get(name)
    if buffer is None or buffer.nbytes < nbytes + ALIGNMENT:
        buffer = pool[name] = np.empty(max(nbytes, 64) + ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


def release() -> None:
    """Drop the calling thread's scratch buffers (they are re-created on demand)."""
    _local.__dict__.pop("pool", None)
