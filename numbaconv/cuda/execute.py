"""Running a plan on the GPU: operands in, padding, the algorithm's kernels, result out.

Device arrays (anything with ``__cuda_array_interface__``) are used without a copy and
the result is a Numba device array; NumPy arrays with ``device='cuda'`` are copied in
and the result copied back. A call whose result and scratch exceed the device's free
memory raises MemoryError before anything is allocated (:mod:`numbaconv.cuda.memory`).
Every launch and copy goes on ``stream`` (the default stream when None); a device result
is returned without waiting for the stream.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..devices import is_device_array
from ..registry import CUDA_REGISTRY
from . import arrays, layout, memory


def execute(plan, input, weight, bias, stream=None, match_torch_nonfinite=False):
    """``plan`` (a cuda Plan) on the user's arrays; device arrays in -> device array out."""
    spec = plan.spec
    stream = cuda.default_stream() if stream is None else stream
    on_device = is_device_array(input)
    if spec.batch == 0 or spec.in_channels == 0 or np.prod(spec.output_shape) == 0:
        empty = np.zeros(spec.output_shape, dtype=spec.dtype)
        return arrays.as_result(cuda.to_device(empty, stream=stream)) if on_device else empty
    out_bytes = spec.batch * spec.out_channels * spec.out_height * spec.out_width * spec.itemsize
    copies = 0 if on_device else (spec.batch * spec.in_channels * spec.in_height
                                  * spec.in_width * spec.itemsize)
    memory.check(f"{spec.op} (algorithm {plan.algorithm!r})",
                 out_bytes + copies + CUDA_REGISTRY[plan.algorithm].workspace_bytes(spec))
    x = layout.to_device(input, spec.dtype,
                         (spec.batch, spec.in_channels, spec.in_height, spec.in_width), stream)
    w = layout.to_device(weight, spec.dtype, (spec.out_channels, spec.in_channels_per_group,
                                              spec.kernel_height, spec.kernel_width), stream)
    if bias is None:
        b = cuda.to_device(np.zeros(spec.out_channels, spec.dtype), stream=stream)
    else:
        b = layout.to_device(bias, spec.dtype, (spec.out_channels,), stream)
    if spec.padding_mode != "zeros":
        x = layout.pad(spec, x, stream)
        spec = spec.with_padding_applied()
    out = arrays.as_result(cuda.device_array(
        (spec.batch, spec.out_channels, spec.out_height, spec.out_width), dtype=spec.dtype,
        stream=stream))
    CUDA_REGISTRY[plan.algorithm].function()(spec, x, w, b, out, stream, match_torch_nonfinite)
    out = out.reshape(*spec.output_shape)
    if on_device:
        return out
    host = out.copy_to_host(stream=stream)
    stream.synchronize()
    return host
