"""Where the arrays of a call live, decided without importing ``numba.cuda``.

An array exposing ``__cuda_array_interface__`` (a Numba device array, a CuPy array, a
torch CUDA tensor) lives on the GPU; so does a CUDA-simulator array when the simulator
is on (``NUMBA_ENABLE_CUDASIM=1``; those arrays expose no interface). Everything else is
host memory, taken by ``np.asarray``. Pure Python: importing numbaconv for the CPU never
imports the CUDA target.
"""

from __future__ import annotations

import sys

import numpy as np

DEVICES = ("cpu", "cuda")


def is_device_array(obj) -> bool:
    """True for an array in GPU memory (read through its interface, never copied)."""
    try:
        if hasattr(obj, "__cuda_array_interface__"):
            return True
    except Exception:  # an object whose property raises is not a device array
        return False
    cuda = sys.modules.get("numba.cuda")
    if cuda is not None and getattr(cuda, "config", None) is not None \
            and cuda.config.ENABLE_CUDASIM:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return isinstance(obj, FakeCUDAArray)
    return False


def shape_and_dtype(obj) -> tuple[tuple, np.dtype]:
    """Shape and dtype of a device array, from its interface (no copy, no driver call)."""
    interface = getattr(obj, "__cuda_array_interface__", None)
    if interface is not None:
        return tuple(interface["shape"]), np.dtype(interface["typestr"])
    return tuple(obj.shape), np.dtype(obj.dtype)  # simulator array


def placement(op: str, device, arrays: dict) -> str:
    """The device a call runs on: ``device`` when given, else where its arrays live.

    ``arrays`` maps parameter names to arguments (``None`` for an absent bias). All of
    them must be on the host or all on the GPU, as torch requires of its tensors.
    """
    if device is not None and device not in DEVICES:
        raise ValueError(f"{op}: device must be one of {DEVICES} or None (where the input "
                         f"lives), got device={device!r}")
    given = {name: a for name, a in arrays.items() if a is not None}
    on_gpu = [name for name, a in given.items() if is_device_array(a)]
    if on_gpu and len(on_gpu) != len(given):
        on_host = [name for name in given if name not in on_gpu]
        raise ValueError(
            f"{op}: expected all arrays on the same device, but {', '.join(on_gpu)} "
            f"{'is' if len(on_gpu) == 1 else 'are'} on the GPU and {', '.join(on_host)} "
            f"{'is' if len(on_host) == 1 else 'are'} on the host; move them with "
            f"numba.cuda.to_device(array) or back with device_array.copy_to_host()"
        )
    if on_gpu:
        if device == "cpu":
            raise ValueError(f"{op}: device='cpu' but the arrays are on the GPU; copy them "
                             f"to the host first (device_array.copy_to_host())")
        return "cuda"
    return device or "cpu"


def on_gpu_arrays(function):
    """Mark a public function whose calls with a device array as input go to the function
    of the same name in :mod:`numbaconv.gpu_arrays` (same arguments). The routing is done
    by :func:`numbaconv.tracing.differentiable`'s wrapper (as for Dask arrays), so this
    decorator goes below ``@differentiable``."""
    function.on_gpu_arrays = True
    return function
