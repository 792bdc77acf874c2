"""Exceptions raised by numbaconv."""


class UnsupportedAlgorithm(ValueError):
    """An explicitly requested algorithm cannot run these arguments.

    Raised instead of silently falling back to another algorithm; the arguments
    themselves are valid (invalid arguments raise a plain ``ValueError``/``TypeError``).
    """


class CudaUnavailable(RuntimeError):
    """A GPU computation was requested but cannot run here.

    The message says what is missing: the ``numba-cuda`` package (``pip install
    'numbaconv[cuda]'``), or a CUDA driver and GPU (``numba.cuda.detect()`` tells why).
    """


class CompileWarning(UserWarning):
    """A kernel is being compiled for this machine (once per environment; then cached).

    Silence it with ``warnings.filterwarnings("ignore", category=numbaconv.CompileWarning)``;
    ``python -m numbaconv compile`` compiles the common kernels ahead of time.
    """
