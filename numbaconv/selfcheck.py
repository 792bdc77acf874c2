"""A quick correctness self-check of every algorithm against a small NumPy oracle."""

from __future__ import annotations

import sys

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import functional
from .registry import REGISTRY

#: (input shape, weight shape, keyword arguments)
CASES = [
    ((2, 8, 11, 13), (8, 8, 3, 3), dict(padding=1)),
    ((2, 16, 10, 9), (12, 16, 3, 3), dict(padding=(0, 1))),
    ((1, 6, 12, 12), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ((1, 4, 15, 14), (6, 2, 5, 3), dict(stride=(2, 3), dilation=(1, 2), padding=2, groups=2)),
    ((3, 5, 9, 9), (7, 5, 1, 1), {}),
    ((1, 3, 8, 8), (4, 3, 4, 4), dict(padding="same", padding_mode="reflect")),
]


def oracle(x, w, b, stride, padding, dilation, groups, padding_mode):
    """float64 cross-correlation through sliding windows (integer padding only)."""
    mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    kh, kw = w.shape[2:]
    sh, sw = stride
    dh, dw = dilation
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0)) + padding, mode=mode[padding_mode])
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, OH, OW, kH, kW)
    kg, cg = w.shape[0] // groups, w.shape[1]
    outs = [np.einsum("nchwrs,kcrs->nkhw", win[:, g * cg:(g + 1) * cg],
                      w[g * kg:(g + 1) * kg].astype(np.float64)) for g in range(groups)]
    return np.concatenate(outs, axis=1) + b[None, :, None, None]


def _explicit_padding(padding, kernel, dilation):
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    p = (padding, padding) if isinstance(padding, int) else padding
    return tuple((q, q) for q in p)


def run(out=sys.stdout) -> bool:
    """Check each algorithm on each case it supports; print a line per pair; True if all pass."""
    rng = np.random.default_rng(0)
    ok = True
    print("numbaconv self-check against a float64 NumPy oracle:", file=out)
    for xs, ws, kwargs in CASES:
        full = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | kwargs
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        spec = functional.plan(x, w, b, **kwargs).spec
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
        expected = oracle(x, w, b, pair(full["stride"]),
                          _explicit_padding(full["padding"], ws[2:], pair(full["dilation"])),
                          pair(full["dilation"]), full["groups"], full["padding_mode"])
        scale = np.max(np.abs(expected))
        for name, algorithm in REGISTRY.items():
            if algorithm.supports(spec) is not None:
                continue
            got = functional.conv2d(x, w, b, **kwargs, algorithm=name)
            error = float(np.max(np.abs(got - expected)) / scale)
            limit = 2e-4 if name.startswith("winograd") else 2e-5
            passed = got.shape == expected.shape and error <= limit
            ok &= passed
            print(f"  {'ok  ' if passed else 'FAIL'} {name:14s} x{xs} w{ws} {kwargs}: "
                  f"max rel err {error:.1e}", file=out)
    print("self-check " + ("passed" if ok else "FAILED"), file=out)
    return ok
