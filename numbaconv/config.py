"""One place for the JIT options and run-time switches every kernel shares.

Environment variables (read once, at import):

``NUMBACONV_FASTMATH``  ``1`` (default) lets LLVM reassociate and contract floating-point
    sums, which it needs to vectorise reductions and use FMA; ``0`` turns it off. The
    no-NaN/no-inf flags are never used: NaN and inf must propagate as they do in torch.
``NUMBACONV_CACHE``     ``1`` (default) keeps compiled kernels on disk (Numba's
    ``cache=True``; the directory follows ``NUMBA_CACHE_DIR``), ``0`` disables it.
``NUMBACONV_AUTOTUNE``  ``1`` makes ``algorithm="auto"`` autotune (see ``autotune``);
    ``0`` (default) keeps the deterministic rule.
``NUMBACONV_CACHE_DIR`` where the autotune decisions are kept (see ``autotune``).
"""

import os


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() not in ("0", "false", "no", "")


FASTMATH = {"contract", "reassoc", "nsz"} if _flag("NUMBACONV_FASTMATH", True) else False
CACHE = _flag("NUMBACONV_CACHE", True)
AUTOTUNE = _flag("NUMBACONV_AUTOTUNE", False)

#: Options for the serial helpers and for the parallel kernels.
JIT = dict(cache=CACHE, fastmath=FASTMATH, nogil=True, error_model="numpy")
JIT_PARALLEL = dict(JIT, parallel=True)
