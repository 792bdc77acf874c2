"""Getting the user's arrays into the kernels' form on the GPU: contiguous, in the spec's
dtype, 4-D NCHW, and padded for the non-zero padding modes.

Host arrays are cast and made contiguous by NumPy before the copy in; device arrays are
used in place when they already are contiguous and of the right dtype (the usual case),
and copied by :func:`_gather_source` kernels otherwise (a transposed torch tensor, a
float32 input with float64 weights).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..devices import is_device_array
from ..spec import ConvSpec
from .runtime import grid_1d, kernel

#: padding_mode -> the code the pad kernel switches on (kernels never see strings).
PAD_MODE_CODES = {"reflect": 0, "replicate": 1, "circular": 2}


def _gather_source(ndim: int):
    """Kernel factory: ``flat[i] = src[unravel(i)]`` for a strided ``ndim``-D source."""

    def factory(dtype):
        if ndim == 1:
            def gather(src, flat):
                i = cuda.grid(1)
                if i < flat.size:
                    flat[i] = src[i]
        elif ndim == 2:
            def gather(src, flat):
                i = cuda.grid(1)
                if i < flat.size:
                    flat[i] = src[i // src.shape[1], i % src.shape[1]]
        elif ndim == 3:
            def gather(src, flat):
                i = cuda.grid(1)
                if i < flat.size:
                    rest, c = divmod(i, src.shape[2])
                    a, b = divmod(rest, src.shape[1])
                    flat[i] = src[a, b, c]
        else:
            def gather(src, flat):
                i = cuda.grid(1)
                if i < flat.size:
                    rest, d = divmod(i, src.shape[3])
                    rest, c = divmod(rest, src.shape[2])
                    a, b = divmod(rest, src.shape[1])
                    flat[i] = src[a, b, c, d]
        return gather

    factory.__name__ = f"gather_{ndim}d"
    return factory


GATHER = {ndim: _gather_source(ndim) for ndim in (1, 2, 3, 4)}


def _pad_source(dtype):
    def pad(x, padded, pad_top, pad_left, mode):
        """padded[n, c, y, x] = x at the reflected/replicated/wrapped position."""
        i = cuda.grid(1)
        if i >= padded.size:
            return
        height, width = x.shape[2], x.shape[3]
        rest, col = divmod(i, padded.shape[3])
        rest, row = divmod(rest, padded.shape[2])
        n, c = divmod(rest, padded.shape[1])
        y, z = row - pad_top, col - pad_left
        if mode == 0:  # reflect: padding < size, so one reflection suffices
            y = -y if y < 0 else (2 * (height - 1) - y if y >= height else y)
            z = -z if z < 0 else (2 * (width - 1) - z if z >= width else z)
        elif mode == 1:  # replicate
            y = min(max(y, 0), height - 1)
            z = min(max(z, 0), width - 1)
        else:  # circular: padding <= size, so one wrap suffices
            y = (y + height) % height
            z = (z + width) % width
        padded[n, c, row, col] = x[n, c, y, z]
    return pad


def _pad_gather_source(dtype):
    def pad_gather(x, sources, fill, out):
        """out[o, r] = x[o, sources[r]], or ``fill`` where sources[r] < 0 (``pad``)."""
        i = cuda.grid(1)
        if i >= out.size:
            return
        o, r = divmod(i, out.shape[1])
        source = sources[r]
        out[o, r] = fill if source < 0 else x[o, source]
    return pad_gather


def to_device(obj, dtype: str, shape: tuple, stream):
    """``obj`` as a C-contiguous device array of ``dtype`` reshaped to ``shape``."""
    if not is_device_array(obj):
        host = np.ascontiguousarray(obj, dtype=dtype).reshape(shape)
        return cuda.to_device(host, stream=stream)
    array = obj if not hasattr(obj, "__cuda_array_interface__") else cuda.as_cuda_array(obj)
    if array.dtype == np.dtype(dtype) and array.is_c_contiguous():
        return array.reshape(*shape) if array.shape != shape else array
    flat = cuda.device_array(int(np.prod(array.shape)), dtype=dtype, stream=stream)
    if flat.size:
        blocks, threads = grid_1d(flat.size)
        kernel(GATHER[array.ndim], np.dtype(dtype).name)[blocks, threads, stream](array, flat)
    return flat.reshape(*shape)


def pad(spec: ConvSpec, x, stream):
    """The input padded by ``spec.padding_mode`` (reflect/replicate/circular), on the GPU."""
    shape = (spec.batch, spec.in_channels, spec.padded_height, spec.padded_width)
    padded = cuda.device_array(shape, dtype=spec.dtype, stream=stream)
    blocks, threads = grid_1d(padded.size)
    kernel(_pad_source, spec.dtype)[blocks, threads, stream](
        x, padded, spec.pad_top, spec.pad_left, PAD_MODE_CODES[spec.padding_mode])
    return padded


def ptx_signatures(dtype: str) -> list:
    """(kernel factory, signature) pairs for the PTX compile check."""
    signatures = [(_pad_source, f"void({dtype}[:, :, :, ::1], {dtype}[:, :, :, ::1], "
                                f"int64, int64, int64)"),
                  (_pad_gather_source, f"void({dtype}[:, ::1], int64[::1], {dtype}, "
                                       f"{dtype}[:, ::1])")]
    for ndim, source in GATHER.items():
        for src_dtype in ("float32", "float64"):
            dims = ", ".join([":"] * ndim)
            signatures.append((source, f"void({src_dtype}[{dims}], {dtype}[::1])"))
    return signatures
