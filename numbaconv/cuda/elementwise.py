"""Activations, the residual sum and linear's bias on the GPU: one thread per value of
flat arrays.

Each activation is its own kernel factory (:data:`UNARY`), so that the operation is a
compile-time constant and the kernel holds only its own arithmetic (not device
functions: typing a call of one needs a GPU context, which the PTX check has not);
``a`` and ``b`` are its parameters (leaky_relu's slope; hardtanh's bounds). Formulas
and NaN handling are torch's: NaN stays NaN through every clamp, sigmoid is
1 / (1 + exp(-x)), GELU is x * erfc(-x / sqrt(2)) / 2 (accurate in the negative tail) or
the tanh approximation.
Constants are cast to the array's dtype: a float32 kernel computes in float32.
"""

from __future__ import annotations

import math

from numba import cuda

#: torch's activations, by the code their kernel switches on (a compile-time constant:
#: each kernel keeps only its own branch).
NAMES = ("relu", "relu6", "hardtanh", "leaky_relu", "sigmoid", "tanh", "silu", "hardsigmoid",
         "hardswish", "gelu", "gelu_tanh")


def _unary_source(name: str):
    code = NAMES.index(name)

    def factory(dtype):
        zero, one, three, six = dtype(0), dtype(1), dtype(3), dtype(6)
        half = dtype(0.5)

        def activation(x, out, a, b):
            """out = the activation of x (flat arrays); a, b: its parameters."""
            i = cuda.grid(1)
            if i >= out.size:
                return
            v = x[i]
            if code == 0:  # relu (NaN stays NaN: comparisons with NaN are false)
                r = zero if v < 0 else v
            elif code == 1:  # relu6
                r = zero if v < 0 else (six if v > 6 else v)
            elif code == 2:  # hardtanh(min_val=a, max_val=b)
                r = a if v < a else (b if v > b else v)
            elif code == 3:  # leaky_relu(negative_slope=a)
                r = v * a if v < 0 else v
            elif code == 4:  # sigmoid
                r = one / (one + math.exp(-v))
            elif code == 5:
                r = math.tanh(v)
            elif code == 6:  # silu: x * sigmoid(x)
                r = v / (one + math.exp(-v))
            elif code == 7:  # hardsigmoid: relu6(x + 3) / 6
                r = zero if v <= -3 else (one if v >= 3 else v / six + half)
            elif code == 8:  # hardswish: x * relu6(x + 3) / 6 literally (-inf * 0: NaN)
                r = v * (zero if v < -3 else (six if v > 3 else v + three)) / six
            elif code == 9:  # gelu: x * erfc(-x / sqrt(2)) / 2 (no cancellation for x << 0)
                r = v * math.erfc(v * dtype(-0.7071067811865476)) * half
            else:  # gelu, approximate='tanh'
                r = half * v * (one + math.tanh(
                    dtype(0.7978845608028654) * (v + dtype(0.044715) * v * v * v)))
            out[i] = r
        return activation

    factory.__name__ = name
    return factory


UNARY = {name: _unary_source(name) for name in NAMES}


def _add_source(dtype):
    def add(x, y, out):
        i = cuda.grid(1)
        if i < out.size:
            out[i] = x[i] + y[i]
    return add


def _prelu_source(dtype):
    def prelu(x, slopes, channels, inner, out):
        """out = x where x > 0, else x * its channel's slope (one slope: channels = 1)."""
        i = cuda.grid(1)
        if i < out.size:
            v = x[i]
            out[i] = v if v > 0 else v * slopes[(i // inner) % channels]
    return prelu


def _bias_columns_source(dtype):
    def add_bias(out, bias):
        """out (rows, N) flat += bias (N,) along each row (linear's bias)."""
        i = cuda.grid(1)
        if i < out.size:
            out[i] += bias[i % bias.size]
    return add_bias


def ptx_signatures(dtype: str) -> list:
    """(kernel factory, signature) pairs for the PTX compile check."""
    flat = f"{dtype}[::1]"
    return ([(source, f"void({flat}, {flat}, {dtype}, {dtype})") for source in UNARY.values()]
            + [(_add_source, f"void({flat}, {flat}, {flat})"),
               (_bias_columns_source, f"void({flat}, {flat})"),
               (_prelu_source, f"void({flat}, {flat}, int64, int64, {flat})")])
