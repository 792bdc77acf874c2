"""The weight gradient of a convolution on the GPU (``nn.grad.conv2d_weight``).

dW[k, c, r, s] = sum over n, oy, ox of grad[n, k, oy, ox] * x[n, g * C/g + c, oy * stride
- pad + r * dilation, ...] (zero padding: positions outside the input are skipped). One
block per weight value: its threads stride over the (n, oy, ox) positions, neighbouring
threads taking neighbouring output columns (coalesced reads of both operands), and their
partial sums are added in shared memory, in the same order on every run.
"""

from __future__ import annotations

from numba import cuda

from .runtime import kernel

THREADS = 128  # per block (a power of two: the tree reduction halves it)


def _weight_grad_source(dtype):
    def conv_weight_grad(x, grad, dw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w):
        partial = cuda.shared.array(THREADS, dtype)
        out_channels, cg, kh, kw = dw.shape
        groups = x.shape[1] // cg
        kg = out_channels // groups
        rest, s = divmod(cuda.blockIdx.x, kw)
        rest, r = divmod(rest, kh)
        k, c = divmod(rest, cg)
        channel = (k // kg) * cg + c
        height, width = x.shape[2], x.shape[3]
        out_h, out_w = grad.shape[2], grad.shape[3]
        t = cuda.threadIdx.x
        total = dtype(0)
        for e in range(t, grad.shape[0] * out_h * out_w, THREADS):
            rest, ox = divmod(e, out_w)
            n, oy = divmod(rest, out_h)
            iy = oy * stride_h - pad_h + r * dil_h
            ix = ox * stride_w - pad_w + s * dil_w
            if 0 <= iy < height and 0 <= ix < width:
                total += grad[n, k, oy, ox] * x[n, channel, iy, ix]
        partial[t] = total
        cuda.syncthreads()
        step = THREADS // 2
        while step > 0:
            if t < step:
                partial[t] += partial[t + step]
            cuda.syncthreads()
            step //= 2
        if t == 0:
            dw[k, c, r, s] = partial[0]
    return conv_weight_grad


def run(spec, x, grad, dw, stream=0):
    """dw (K, C/g, kH, kW) for 4-D contiguous device arrays (zero padding)."""
    if dw.size:
        kernel(_weight_grad_source, spec.dtype)[dw.size, THREADS, stream](
            x, grad, dw, spec.stride_h, spec.stride_w, spec.pad_top, spec.pad_left,
            spec.dilation_h, spec.dilation_w)
    return dw


def ptx_signatures(dtype: str) -> list:
    """(kernel factory, signature) pairs for the PTX compile check."""
    a4 = f"{dtype}[:, :, :, ::1]"
    return [(_weight_grad_source, f"void({a4}, {a4}, {a4}, " + ", ".join(["int64"] * 6) + ")")]
