"""Batch normalisation and softmax on the GPU.

Arrays are viewed as (outer, channels or dim, inner), C-contiguous.

- ``batch_norm`` in eval (or with given statistics): one thread per value of the flat
  arrays,
  y = (x - mean) / sqrt(var + eps) * weight + bias of its channel.
- ``batch_norm`` in training, ``layer_norm`` and ``group_norm``: one block per line of
  values normalised together (a channel's N * inner values; a row; a group of an image)
  reduces them in shared memory, twice (the mean, then the squared deviations from it:
  no cancellation, as torch's two-pass CPU kernel), updates batch norm's running
  statistics in place (momentum, the unbiased variance) and writes the normalised values
  in a third pass.
- ``softmax`` / ``log_softmax`` along ``dim``: one thread per (outer, inner) line, three
  passes along it (maximum, sum of exp(x - max), the results); neighbouring threads take
  neighbouring inner positions, so their reads coalesce when ``dim`` is not the last axis.
"""

from __future__ import annotations

import math

from numba import cuda

REDUCE_THREADS = 256  # threads of a training batch-norm block (a power of two)


def _affine_source(dtype):
    def batch_norm_affine(x, mean, var, weight, bias, eps, has_weight, has_bias, channels,
                          inner, out):
        i = cuda.grid(1)
        if i >= out.size:
            return
        c = (i // inner) % channels
        scale = dtype(1) / math.sqrt(var[c] + eps)
        if has_weight:
            scale *= weight[c]
        value = (x[i] - mean[c]) * scale
        if has_bias:
            value += bias[c]
        out[i] = value
    return batch_norm_affine


#: How each normalisation finds the weight and bias of a value: per reduced line
#: (batch norm: its channel), per position along the line (layer norm), or per channel of
#: the group the line is (group norm).
AFFINE_MODES = ("per_line", "per_position", "per_group_channel")


def _normalize_source(mode: str):
    code = AFFINE_MODES.index(mode)

    def factory(dtype):
        def normalize_lines(x, running_mean, running_var, weight, bias, eps, momentum,
                            has_weight, has_bias, track, groups, positions, out):
            """Line c of x (outer, lines, inner) -- its outer * inner values -- normalised
            by its mean and biased variance, by one block."""
            partial = cuda.shared.array(REDUCE_THREADS, dtype)
            c = cuda.blockIdx.x
            t = cuda.threadIdx.x
            outer, inner = x.shape[0], x.shape[2]
            count = outer * inner
            mean = dtype(0)
            squares = dtype(0)
            for stage in range(2):  # the sum, then the squared deviations from the mean
                total = dtype(0)
                for e in range(t, count, REDUCE_THREADS):
                    value = x[e // inner, c, e % inner]
                    if stage == 0:
                        total += value
                    else:
                        total += (value - mean) * (value - mean)
                partial[t] = total
                cuda.syncthreads()
                step = REDUCE_THREADS // 2
                while step > 0:
                    if t < step:
                        partial[t] += partial[t + step]
                    cuda.syncthreads()
                    step //= 2
                if stage == 0:
                    mean = partial[0] / dtype(count)
                else:
                    squares = partial[0]
                cuda.syncthreads()  # every thread has read the sum before it is overwritten
            if t == 0 and track:  # (batch norm's running statistics, unbiased variance)
                running_mean[c] = (dtype(1) - momentum) * running_mean[c] + momentum * mean
                running_var[c] = ((dtype(1) - momentum) * running_var[c]
                                  + momentum * squares / dtype(count - 1))
            inverse = dtype(1) / math.sqrt(squares / dtype(count) + eps)
            for e in range(t, count, REDUCE_THREADS):
                n, q = e // inner, e % inner
                if code == 0:
                    p = c
                elif code == 1:
                    p = q
                else:
                    p = (c % groups) * (inner // positions) + q // positions
                scale = inverse * weight[p] if has_weight else inverse
                value = (x[n, c, q] - mean) * scale
                out[n, c, q] = value + bias[p] if has_bias else value
        return normalize_lines

    factory.__name__ = f"normalize_lines_{mode}"
    return factory


NORMALIZE = {mode: _normalize_source(mode) for mode in AFFINE_MODES}


def _softmax_source(log: bool):
    def factory(dtype):
        def softmax(x, out):
            i = cuda.grid(1)
            outer, length, inner = x.shape
            if i >= outer * inner:
                return
            o, q = divmod(i, inner)
            top = dtype(-math.inf)
            for k in range(length):
                top = max(top, x[o, k, q])
            total = dtype(0)
            for k in range(length):
                total += math.exp(x[o, k, q] - top)
            if log:
                shift = top + math.log(total)
                for k in range(length):
                    out[o, k, q] = x[o, k, q] - shift
            else:
                for k in range(length):
                    out[o, k, q] = math.exp(x[o, k, q] - top) / total
        return softmax

    factory.__name__ = "log_softmax" if log else "softmax"
    return factory


SOFTMAX = {False: _softmax_source(False), True: _softmax_source(True)}


def ptx_signatures(dtype: str) -> list:
    """(kernel factory, signature) pairs for the PTX compile check."""
    a3, flat = f"{dtype}[:, :, ::1]", f"{dtype}[::1]"
    return [
        (_affine_source, f"void({flat}, {flat}, {flat}, {flat}, {flat}, {dtype}, boolean, "
                         f"boolean, int64, int64, {flat})"),
        *[(source, f"void({a3}, {flat}, {flat}, {flat}, {flat}, {dtype}, {dtype}, boolean, "
                   f"boolean, boolean, int64, int64, {a3})") for source in NORMALIZE.values()],
        *[(source, f"void({a3}, {a3})") for source in SOFTMAX.values()],
    ]
