"""The CPU's vector instructions and the register-tile sizes that follow from them.

Pure Python (no Numba): the planner, the registry's workspace estimates and the bench
read these figures, and the kernels in ``cpu/`` are compiled with them, so what
``plan()`` says about a kernel's tiles is what runs.

* ``VECTOR_BYTES``: the widest vector the compiled code may use, 64 bytes with AVX-512,
  else 32 (AVX2; also what a portable build assumes, see below).
* ``MR`` x ``NV``: the register tile of the matrix-product and implicit-GEMM microkernels,
  rows by vectors. With 32 vector registers (AVX-512) 6 x 4 uses 24 accumulators, 4 row
  vectors and a broadcast; with 16 (AVX2) 6 x 2 uses 12 + 2 + 1.

A portable build (``NUMBA_CPU_NAME`` set, e.g. ``generic`` or ``haswell``, for a disk
cache shared between machines) compiles for a CPU other than this one, so it assumes
32-byte vectors at most.
"""

from __future__ import annotations

import functools
import os
import platform


def portable_cpu_name() -> str:
    """The CPU that ``NUMBA_CPU_NAME`` names (Numba then compiles for it), or ''."""
    return os.environ.get("NUMBA_CPU_NAME", "")


@functools.lru_cache(maxsize=1)
def host_features() -> dict:
    """This CPU's features as LLVM names them (``avx512f``, ``avx2``, ``fma``...)."""
    import llvmlite.binding as llvm  # LLVM's own view: what the kernels are compiled for

    return dict(llvm.get_host_cpu_features())


def _vector_bytes() -> int:
    if portable_cpu_name():
        return 32
    return 64 if host_features().get("avx512f", False) else 32


VECTOR_BYTES = _vector_bytes()
MR = 6
NV = 4 if VECTOR_BYTES == 64 else 2


def lanes(itemsize: int) -> int:
    """Values of ``itemsize`` bytes in one vector (16 float32 with AVX-512, 8 with AVX2)."""
    return VECTOR_BYTES // itemsize


def panel_positions(itemsize: int) -> int:
    """Output positions in one register tile's row of vectors (``NV`` vectors): 64 float32
    with AVX-512, 16 with AVX2."""
    return NV * lanes(itemsize)


def vector_isa() -> str:
    """The widest vector instructions the kernels are compiled for, in words."""
    if portable_cpu_name():
        return f"NUMBA_CPU_NAME={portable_cpu_name()} (vectors of at most 32 bytes)"
    features = host_features()
    if features.get("avx512f", False):
        return "AVX-512"
    if features.get("avx2", False):
        return "AVX2"
    return "no AVX2 (" + (platform.machine() or "unknown") + ")"
