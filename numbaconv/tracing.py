"""How numbaconv's functions notice that a gradient is being traced through them.

Gradients are traced by the ``autograd`` package (``numbaconv.nn.value_and_grad``), which
passes its own array-like boxes through the forward pass. A function marked
:func:`differentiable` hands calls with a box among their arguments to its autograd
primitive (:mod:`numbaconv.autodiff`: the same function on the boxes' values, plus its
gradient); plain calls go straight to the function, after one dictionary lookup when
autograd was never imported, else one type test per argument (0.1-0.4 us in all).
Nothing here imports autograd: with no box, it is never needed.
"""

from __future__ import annotations

import functools
import inspect
import sys

import numpy as np

from ._dask_dispatch import is_dask_array
from .devices import is_device_array


def is_traced(value) -> bool:
    """Whether ``value`` is an autograd box, an array a gradient is being traced through."""
    tracer = sys.modules.get("autograd.tracer")
    return tracer is not None and isinstance(value, tracer.Box)


def as_array(value):
    """``np.asarray(value)``, but a traced value (a box), a Dask array or a GPU array as it
    is: it has shape, ndim and reshape of its own, and the array inside must not be taken
    out of it (a Dask array would be computed whole, a GPU array copied to the host)."""
    if type(value) is np.ndarray:
        return value
    if is_traced(value) or is_dask_array(value) or is_device_array(value):
        return value
    return np.asarray(value)


def differentiable(function):
    """Mark a public function whose gradient :mod:`numbaconv.autodiff` defines. Its wrapper
    also sends a Dask array input to :mod:`numbaconv.dask_arrays` when the function is
    marked ``on_dask_arrays`` (:mod:`numbaconv._dask_dispatch`), and a GPU array input to
    :mod:`numbaconv.gpu_arrays` when it is marked ``on_gpu_arrays``
    (:mod:`numbaconv.devices`)."""
    signature = inspect.signature(function)
    keyword_only = frozenset(name for name, parameter in signature.parameters.items()
                             if parameter.kind is inspect.Parameter.KEYWORD_ONLY)

    modules = sys.modules
    on_dask = getattr(function, "on_dask_arrays", False)  # (_dask_dispatch.on_dask_arrays)
    on_gpu = getattr(function, "on_gpu_arrays", False)  # (devices.on_gpu_arrays)
    routed = on_dask or on_gpu

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if routed:
            input = args[0] if args else kwargs.get("input")
            if type(input) is not np.ndarray:
                if on_dask and is_dask_array(input):
                    from . import dask_arrays

                    return getattr(dask_arrays, function.__name__)(*args, **kwargs)
                if on_gpu and is_device_array(input):
                    from . import gpu_arrays

                    return getattr(gpu_arrays, function.__name__)(*args, **kwargs)
        if "autograd.tracer" not in modules:  # nothing can be traced: straight through
            return function(*args, **kwargs)
        for value in args:
            if type(value) is not np.ndarray and is_traced(value):
                break
        else:
            for value in kwargs.values():
                if type(value) is not np.ndarray and is_traced(value):
                    break
            else:
                return function(*args, **kwargs)
        from . import autodiff

        # autograd follows positional arguments only: every argument that can be passed
        # by position goes by position (binding costs ~15 us: only when there is a keyword
        # that could go by position).
        primitive = autodiff.primitive_of(function.__name__)
        if keyword_only.issuperset(kwargs):
            return primitive(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        return primitive(*bound.args, **bound.kwargs)

    wrapper.raw = function
    return wrapper
