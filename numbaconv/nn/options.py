"""Checks of module constructor options that the functional layer has no counterpart for."""

from __future__ import annotations

import numbers

import numpy as np

from ..spec import _is_int, check_float_dtype


def module_dtype(owner: str, dtype) -> np.dtype:
    """The parameters' dtype: float32 when None (torch's default dtype), else float32/64."""
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    check_float_dtype(owner, "dtype", dtype)
    return dtype


def check_bool(owner: str, name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a bool, got {value!r}")
    return bool(value)


def check_int(owner: str, name: str, value, minimum: int | None = None) -> int:
    if not _is_int(value):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be at least {minimum}, got {value}")
    return int(value)


def check_number(owner: str, name: str, value) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    return value
