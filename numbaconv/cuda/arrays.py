"""The device arrays numbaconv returns: Numba's own, plus the sum a forward pass needs.

Numba device arrays have no arithmetic, so a residual connection written as in torch
(``self.bn2(self.conv2(out)) + identity``) would fail on the GPU. Every result of a GPU
call is therefore a :class:`DeviceArray` (made by :func:`result_class`): Numba's device
array class (the simulator's under ``NUMBA_ENABLE_CUDASIM=1``) whose ``+`` and ``+=``
of two device arrays of one shape run an add kernel, and whose reshapes stay
DeviceArrays. It is a Numba device array in every other way (``copy_to_host``,
``__cuda_array_interface__`` for CuPy and torch, kernel arguments).
"""

from __future__ import annotations

import functools

from .runtime import numba_cuda


@functools.lru_cache(maxsize=None)
def result_class(simulated: bool):
    """The DeviceArray class over Numba's device arrays (or the simulator's)."""
    if simulated:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as base
    else:
        from numba.cuda.cudadrv.devicearray import DeviceNDArray as base

    class DeviceArray(base):
        """A Numba device array that adds: ``a + b`` and ``a += b`` for device arrays of
        one shape (numbaconv.gpu_arrays.add)."""

        # NumPy's operators give way to ours (host + DeviceArray comes here, not to a
        # silent copy of this array to the host through __array__)
        __array_ufunc__ = None

        def __add__(self, other):
            from ..gpu_arrays import add

            return add(self, _device_operand(other))

        __radd__ = __add__

        def __iadd__(self, other):
            from ..gpu_arrays import add

            return add(self, _device_operand(other), out=self)

        if simulated:  # the simulator's reshape builds its own class: keep ours
            def reshape(self, *args, **kwargs):
                return type(self)(self._ary.reshape(*args, **kwargs), stream=self.stream)

    return DeviceArray


def _device_operand(value):
    from ..devices import is_device_array

    if not is_device_array(value):
        raise TypeError(f"a GPU array adds only another GPU array of its shape, got "
                        f"{type(value).__name__}; move it with numba.cuda.to_device(array)")
    return value


def as_result(array):
    """``array`` (a fresh Numba device array) as a DeviceArray, without a copy."""
    cuda = numba_cuda()
    simulated = bool(cuda.config.ENABLE_CUDASIM)
    cls = result_class(simulated)
    if simulated:
        return cls(array._ary, stream=array.stream)
    return cls(array.shape, array.strides, array.dtype, stream=array.stream,
               gpu_data=array.gpu_data)
