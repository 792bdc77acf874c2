"""Activations fused into a convolution's output pass (pure Python: nothing compiles here).

``numbaconv.fused_conv2d(..., activation=...)``, the ONNX loader (a Conv whose result only
a Relu, Clip, SiLU or HardSwish reads) and ``numbaconv.nn.fuse`` (Conv2d, BatchNorm2d,
activation in a Sequential) ask the convolution kernels to apply the activation to each
output row as they write it (:mod:`numbaconv.cpu.epilogue`), instead of a second pass over
the whole output. Algorithms whose kernels do not fuse (``Algorithm.fuses_epilogue``
false: Winograd, the GPU) apply it right after, with the same semantics.

An epilogue is a read-only float64 array of 3, ``post``: the kind, then a clamp's bounds;
no epilogue is None (``NO_EPILOGUE``), for which Numba compiles the kernels without any of
the epilogue's code (it prunes the branches on ``post is None``): plain convolutions run
exactly the code they ran before epilogues existed.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

NONE, CLAMP, SILU, HARDSWISH = 0, 1, 2, 3  # as cpu.epilogue's kernels read post[0]

#: The activations a convolution can fuse: name -> (kind, low, high).
ACTIVATIONS = {
    "relu": (CLAMP, 0.0, math.inf),
    "relu6": (CLAMP, 0.0, 6.0),
    "silu": (SILU, 0.0, 0.0),
    "hardswish": (HARDSWISH, 0.0, 0.0),
}


def _frozen(values) -> np.ndarray:
    post = np.array(values, dtype=np.float64)
    post.setflags(write=False)
    return post


NO_EPILOGUE = None


def as_epilogue(activation) -> np.ndarray:
    """``post`` for ``activation``: None, one of ACTIVATIONS' names, or ("clamp", low,
    high) (ONNX Clip, torch's hardtanh; either bound may be None for none)."""
    if activation is None:
        return NO_EPILOGUE
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return _frozen(ACTIVATIONS[activation])
    if isinstance(activation, tuple) and len(activation) == 3 and activation[0] == "clamp":
        bounds = activation[1:]
        if not all(b is None or isinstance(b, numbers.Real) for b in bounds):
            raise TypeError(f"activation: a clamp's bounds must be numbers or None, got "
                            f"{activation!r}")
        low = -math.inf if bounds[0] is None else float(bounds[0])
        high = math.inf if bounds[1] is None else float(bounds[1])
        if not low <= high:
            raise ValueError(f"activation: a clamp needs low <= high, got {activation!r}")
        return _frozen((CLAMP, low, high))
    raise ValueError(f"activation must be None, one of {sorted(ACTIVATIONS)} or "
                     f"('clamp', low, high), got {activation!r}")


def apply(out: np.ndarray, post: np.ndarray) -> np.ndarray:
    """``out`` with the epilogue applied in place (for kernels that do not fuse it)."""
    if post is None or out.size == 0:
        return out
    kind = int(post[0])
    from . import activations

    if kind == CLAMP:
        with np.errstate(invalid="ignore"):
            np.clip(out, post[1], post[2], out=out)
    elif kind == SILU:
        out[...] = activations.silu(out)
    else:
        out[...] = activations.hardswish(out)
    return out
