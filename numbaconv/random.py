"""numbaconv's default random generator, which ``numbaconv.manual_seed`` seeds.

Everything in numbaconv that draws random numbers (parameter initialisation in
``numbaconv.nn`` and ``numbaconv.nn.init``, RReLU's training-mode slopes) takes an
optional ``rng``/``generator`` argument: a ``numpy.random.Generator``, or an int seed
for a fresh one. Without it, it draws from this module's default generator, as torch
draws from its global one, so that one call makes a whole script reproducible:

>>> import numbaconv
>>> from numbaconv import nn
>>> _ = numbaconv.manual_seed(0)
>>> a = nn.Linear(3, 2).weight
>>> _ = numbaconv.manual_seed(0)
>>> b = nn.Linear(3, 2).weight
>>> bool((a == b).all())
True

The values differ from torch's for the same seed (the random streams differ); the
distributions are torch's.
"""

from __future__ import annotations

import threading

import numpy as np

from .spec import _is_int

_lock = threading.Lock()
_default = np.random.default_rng()


def manual_seed(seed) -> np.random.Generator:
    """Seed numbaconv's default generator with the int ``seed`` and return it.

    As ``torch.manual_seed`` does, any int is accepted; a negative one is taken modulo
    2**64.

    >>> import numbaconv
    >>> g = numbaconv.manual_seed(42)
    >>> g is numbaconv.random.default_generator()
    True
    """
    global _default
    if not _is_int(seed):
        raise TypeError(f"manual_seed: seed must be an int, got {seed!r}")
    with _lock:
        _default = np.random.default_rng(int(seed) % 2**64)
        return _default


def default_generator() -> np.random.Generator:
    """The generator numbaconv draws from when no ``rng``/``generator`` is given."""
    return _default


def as_generator(rng, name: str = "rng") -> np.random.Generator:
    """A ``numpy.random.Generator`` from None (the default generator), an int seed (a fresh
    generator seeded with it) or a Generator (itself)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return _default
    if _is_int(rng) or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise TypeError(f"{name} must be None, an int seed or a numpy.random.Generator, got "
                    f"{rng!r}")
