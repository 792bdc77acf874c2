"""Let OpenBLAS use its AVX-512 kernels on AVX-512 CPUs it would otherwise give AVX2 ones.

OpenBLAS (as shipped in the NumPy and SciPy wheels) picks its kernels per CPU at load
time; on AMD Zen 4 it picks the AVX2 "Zen"/Haswell kernels although the CPU runs the
AVX-512 "SkylakeX" ones correctly and, measured on the reference machine, about 1.7x
faster (sgemm 4096^3: 250 -> 470 GFLOP/s on 2 threads). The choice is read from
``OPENBLAS_CORETYPE`` when an OpenBLAS library is loaded, so this must run before
NumPy's (and SciPy's, which numbaconv's kernels call through Numba) are loaded.

Nothing happens when ``OPENBLAS_CORETYPE`` is already set, when
``NUMBACONV_OPENBLAS_CORETYPE=0``, or when the CPU lacks AVX-512 F/BW/DQ/VL.
"""

import os

_REQUIRED = {"avx512f", "avx512bw", "avx512dq", "avx512vl"}


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def prefer_avx512_openblas() -> None:
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    if os.environ.get("NUMBACONV_OPENBLAS_CORETYPE", "1").strip() in ("0", "", "false", "no"):
        return
    if _REQUIRED <= _cpu_flags():
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
