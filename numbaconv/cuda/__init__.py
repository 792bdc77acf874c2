"""GPU kernels (``@cuda.jit``, from the ``numba-cuda`` package: ``pip install 'numbaconv[cuda]'``).

Nothing here is imported until a call runs on the GPU; see :mod:`numbaconv.cuda.runtime`.
"""
