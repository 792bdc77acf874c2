"""A small cache of transformed weights, keyed by the weights' exact contents.

Transforming the weights (Winograd's G g G^T) costs as much as the whole convolution
on small, deep layers (512 channels at 7x7: 9 MiB of weights become 36 MiB), yet a
model calls a layer many times with the same weights. The cache keeps a private copy
of each weight array it has seen and reuses the transform only when the new call's
weights are bit-for-bit equal to that copy: mutating an array in place between calls
therefore gives a fresh transform, never a stale one. Comparing costs one read of
the weights, far less than the transform.
"""

import threading
from collections import OrderedDict

import numpy as np

from ..config import cache_budget, weights_are_fresh
from .dispatch import parallel_kernel


def default_max_bytes() -> int:
    """The bytes the cache may hold (least recently used entries evicted beyond): an
    eighth of the machine's memory, between 256 MiB and 2 GiB, or
    ``NUMBACONV_WEIGHT_CACHE`` (``1G``, ``300M``; ``0`` turns the cache off).

    Sized by memory, not by a count of entries: a forward pass of googlenet has 19
    Winograd layers and densenet121 58, and a cache of 16 entries thrashed on both
    (each layer evicting the one the next pass needs first).
    """
    return cache_budget("NUMBACONV_WEIGHT_CACHE")


@parallel_kernel
def count_differences(a, b, worker, workers):
    """Number of positions where the two equal-length integer views differ."""
    # A contiguous chunk per share, indexed from 0 so that LLVM sees no negative index
    # to wrap around and vectorises the loop.
    chunk = -(-a.size // workers)
    lo = min(a.size, worker * chunk)
    part_a, part_b = a[lo:lo + chunk], b[lo:lo + chunk]
    differences = 0
    for i in range(part_a.size):
        differences += part_a[i] != part_b[i]
    return differences


def _words(array):
    flat = array.reshape(-1)
    return flat.view(np.uint64) if flat.nbytes % 8 == 0 else flat.view(np.uint8)


class TransformCache:
    """Transformed weights by (tag, weight array), at most ``max_bytes`` of them (weight
    copies included), least recently used evicted first."""

    def __init__(self, max_bytes=None):
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        self._entries = OrderedDict()  # key -> (weight copy, transformed)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held: the weight copies and their transforms."""
        with self._lock:
            return sum(_entry_bytes(w, ts) for w, ts in self._entries.values())

    def get(self, tag, weight, compute):
        """``compute()``'s result for ``weight`` (C-contiguous), reusing an equal earlier one."""
        if weights_are_fresh():  # a training step: nothing to reuse, nothing worth keeping
            return compute()
        # The address tells layers of equal shape apart; the contents decide reuse.
        key = (tag, weight.ctypes.data, weight.shape, weight.dtype.str)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and count_differences(_words(entry[0]), _words(weight)) == 0:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
            return entry[1]
        transformed = compute()
        if _entry_bytes(weight, transformed) <= self.max_bytes:
            with self._lock:
                self._entries[key] = (weight.copy(), transformed)
                self._entries.move_to_end(key)
                self._evict()
        return transformed

    def _evict(self):
        total = sum(_entry_bytes(w, ts) for w, ts in self._entries.values())
        while self._entries and total > self.max_bytes:
            _, (w, ts) = self._entries.popitem(last=False)
            total -= _entry_bytes(w, ts)

    def clear(self):
        with self._lock:
            self._entries.clear()


def _entry_bytes(weight, transformed) -> int:
    """The weight copy and its transform (an array, or a sequence of arrays): iterating
    over an array's rows instead cost 0.3 s of a ResNet-18 training step, in which every
    step's new weights evict the last ones' transforms."""
    if isinstance(transformed, np.ndarray):
        return weight.nbytes + transformed.nbytes
    return weight.nbytes + sum(np.asarray(t).nbytes for t in transformed)


TRANSFORMED_WEIGHTS = TransformCache()
