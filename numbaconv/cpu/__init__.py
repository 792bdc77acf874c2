"""CPU kernels, one algorithm per module, compiled with ``@njit(parallel=True)``."""
