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
"""

import os


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
