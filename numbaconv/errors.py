"""Exceptions raised by numbaconv."""


class UnsupportedAlgorithm(ValueError):
    """An explicitly requested algorithm cannot run these arguments.

    Raised instead of silently falling back to another algorithm; the arguments
    themselves are valid (invalid arguments raise a plain ``ValueError``/``TypeError``).
    """
