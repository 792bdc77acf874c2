"""CPU kernels, one algorithm per module: serial Numba functions that do one share of the
work each, run on Numba's threads by :mod:`.dispatch` (``@parallel_kernel``)."""
