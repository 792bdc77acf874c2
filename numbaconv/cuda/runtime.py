"""Access to the CUDA target: clear errors when it is missing, and kernels built per dtype.

``numba.cuda`` is imported on the first GPU call only. It must be the ``numba-cuda``
package (Numba's own deprecated copy is not enough); ``NUMBA_ENABLE_CUDASIM=1``, set
before that first import, runs every kernel in Numba's CUDA simulator instead.

Kernels are built by factories that close over a dtype and the compile-time constants
(shared-array shapes must be constants), so each module keeps plain Python kernel
sources; :func:`kernel` compiles them on first use, and the PTX check in the tests
compiles the same sources for real targets (see :func:`ptx_signatures`).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import CudaUnavailable

INSTALL_HINT = "install numba-cuda with the CUDA toolkit wheels: pip install 'numbaconv[cuda]'"


def numba_cuda():
    """The ``numba.cuda`` module from ``numba-cuda``, or CudaUnavailable saying what is missing."""
    try:
        from numba import cuda
    except ImportError as error:
        raise CudaUnavailable(f"GPU support needs the numba-cuda package ({error}); "
                              f"{INSTALL_HINT}") from error
    if getattr(cuda, "implementation", None) != "NVIDIA":
        raise CudaUnavailable("GPU support needs the numba-cuda package, not Numba's "
                              f"built-in (deprecated) CUDA target; {INSTALL_HINT}")
    return cuda


def simulated() -> bool:
    """True when NUMBA_ENABLE_CUDASIM made ``numba.cuda`` the simulator."""
    return bool(numba_cuda().config.ENABLE_CUDASIM)


def require_gpu():
    """``numba.cuda`` with a usable device (or the simulator), else CudaUnavailable."""
    cuda = numba_cuda()
    if not cuda.is_available():
        raise CudaUnavailable(
            "no usable CUDA GPU: numba.cuda.is_available() is False (no NVIDIA driver or "
            "device here; numba.cuda.detect() prints why). Pass NumPy arrays without "
            "device='cuda' to run on the CPU")
    return cuda


def numba_type(dtype):
    from numba import from_dtype

    return from_dtype(np.dtype(dtype))


@functools.lru_cache(maxsize=None)
def kernel(source, dtype_name: str):
    """The compiled kernel of ``source(dtype)`` (a kernel factory), built once per dtype."""
    cuda = numba_cuda()
    return cuda.jit(source(numba_type(dtype_name)))


def grid_1d(count: int, threads: int = 256) -> tuple:
    """(blocks, threads) covering ``count`` threads, one per element."""
    return max(1, -(-count // threads)), threads


def ptx_signatures() -> list:
    """(label, kernel factory, dtype, signature) for every kernel the GPU path launches."""
    from . import (direct, elementwise, gemm, interpolate, layout, norm, pool, transposed,
                   weight_grad, winograd)

    entries = []
    for dtype in ("float32", "float64"):
        for module in (layout, direct, winograd, gemm, elementwise, pool, norm, transposed,
                       weight_grad, interpolate):
            for source, signature in module.ptx_signatures(dtype):
                entries.append((f"{source.__name__}[{signature}]", source, dtype, signature))
    return entries


def compile_ptx(source, dtype: str, signature: str, cc: tuple) -> str:
    """PTX of ``source(dtype)`` for compute capability ``cc``: needs the toolkit's NVVM
    (the ``numbaconv[cuda]`` extra), not a GPU or a driver."""
    return numba_cuda().compile_ptx(source(numba_type(dtype)), signature, cc=cc)[0]
