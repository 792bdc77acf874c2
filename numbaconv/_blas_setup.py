"""Let OpenBLAS use its AVX-512 kernels on AVX-512 CPUs it would otherwise give AVX2 ones.

OpenBLAS (as shipped in the NumPy and SciPy wheels) picks its kernels per CPU at load
time; on AMD Zen 4 it picks the AVX2 "Zen"/Haswell kernels although the CPU runs the
AVX-512 "SkylakeX" ones correctly and, measured on the reference machine, about 1.7x
faster (sgemm 4096^3: 250 -> 470 GFLOP/s on 2 threads). The choice is read from
``OPENBLAS_CORETYPE`` when an OpenBLAS library is loaded, so this must run before
NumPy's (and SciPy's, which numbaconv's kernels call through Numba) are loaded.

``NUMBACONV_OPENBLAS_CORETYPE`` decides:

* unset or ``auto`` (default): set ``OPENBLAS_CORETYPE=SkylakeX`` when it is unset and
  the CPU has AVX-512 F/BW/DQ/VL; an existing ``OPENBLAS_CORETYPE`` is respected;
* ``0``/``off``: change nothing;
* a core name (e.g. ``SkylakeX``): use it even over an existing ``OPENBLAS_CORETYPE``
  (for machines whose environment pins OpenBLAS to older kernels).
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
    choice = os.environ.get("NUMBACONV_OPENBLAS_CORETYPE", "auto").strip()
    if choice.lower() in ("0", "off", "false", "no", ""):
        return
    if choice.lower() != "auto":
        os.environ["OPENBLAS_CORETYPE"] = choice
    elif "OPENBLAS_CORETYPE" not in os.environ and _REQUIRED <= _cpu_flags():
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
