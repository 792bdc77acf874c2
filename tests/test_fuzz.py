"""Fuzz: thousands of random argument sets, valid and invalid, against torch.

Per family (conv1d, conv2d): numbaconv must accept exactly what torch accepts, raise
only ValueError/TypeError otherwise (never crash), and compute what torch computes.
"""

import numpy as np
import pytest

import numbaconv
from conftest import TORCH
from torch_oracle import torch_conv

CASES_PER_FAMILY = 5000

GOOD_INTS = [1, 1, 1, 2, 3]
BAD_INTS = [0, -1, 1.5, True, "1", None]


def _param(rng, nsp, good, bad, bad_rate=0.08):
    """An int, a tuple (sometimes of the wrong length) or, now and then, something invalid."""
    r = rng.random()
    if r < bad_rate:
        return bad[rng.integers(len(bad))]
    if r < 0.5:
        return good[rng.integers(len(good))]
    length = nsp if rng.random() > 0.05 else int(rng.integers(0, 4))
    return tuple(good[rng.integers(len(good))] for _ in range(length))


def random_case(rng, op):
    nsp = 1 if op == "conv1d" else 2
    groups = [1, 1, 2, 3][rng.integers(4)] if rng.random() > 0.05 else [0, -1, 2.0, True][rng.integers(4)]
    g = groups if isinstance(groups, int) and not isinstance(groups, bool) and groups > 0 else 1
    cin = g * int(rng.integers(0 if rng.random() < 0.03 else 1, 4))
    cout = g * int(rng.integers(1, 4)) if rng.random() > 0.03 else int(rng.integers(0, 5))
    kernel = tuple(int(rng.integers(1, 5)) for _ in range(nsp))
    spatial = tuple(int(rng.integers(1, 9)) for _ in range(nsp))
    batch = int(rng.integers(0, 3))
    xs = ((batch,) if rng.random() > 0.3 else ()) + (cin,) + spatial
    if rng.random() < 0.03:  # wrong number of dimensions
        xs = xs + (2,) if rng.random() < 0.5 else xs[1:]
    ws = (cout, cin // g if rng.random() > 0.05 else cin // g + 1) + kernel
    padding = _param(rng, nsp, [0, 0, 1, 2, 3], [-1, 1.0, "full", "SAME", True])
    if rng.random() < 0.25:
        padding = ["same", "valid"][rng.integers(2)]
    kwargs = dict(
        stride=_param(rng, nsp, GOOD_INTS, BAD_INTS),
        padding=padding,
        dilation=_param(rng, nsp, GOOD_INTS, BAD_INTS),
        groups=groups,
        padding_mode=["zeros", "zeros", "reflect", "replicate", "circular", "mirror"][rng.integers(6)],
    )
    dtype = [np.float32, np.float64][rng.integers(2)]
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if rng.random() < 0.5 else None
    if b is not None and rng.random() < 0.03:
        b = b[:-1]
    return x, w, b, kwargs


def _ints(value):
    return value if isinstance(value, tuple) else (value,)


def documented_divergence(x, kwargs, op):
    """Where numbaconv rejects on purpose what torch lets through (README, "Differences").

    * negative padding with a padding_mode other than zeros: torch.nn.ConvNd hands it to
      F.pad, which crops instead; numbaconv rejects negative padding in every mode;
    * dilation <= 0 with an empty batch: torch skips its dilation check when there is
      nothing to compute; numbaconv always rejects it;
    * a padding tuple of another length than the spatial dimensions with a padding_mode
      other than zeros: the module turns it into F.pad amounts for the wrong dimensions
      (a 1-tuple pads only the width of an unbatched 2-D input and fails on a batched
      one; all-zero longer tuples pass); numbaconv applies F.convNd's rule (a 1-tuple
      applies to every dimension, other lengths are rejected).
    """
    nsp = 1 if op == "conv1d" else 2
    padding = kwargs["padding"]
    if kwargs["padding_mode"] != "zeros" and isinstance(padding, tuple) and len(padding) != nsp:
        return "padding tuple of another length in a non-zero padding mode"
    if kwargs["padding_mode"] != "zeros" and not isinstance(padding, str) \
            and any(isinstance(p, int) and not isinstance(p, bool) and p < 0 for p in _ints(padding)):
        return "negative padding in a non-zero padding mode"
    empty_batch = x.ndim == nsp + 2 and x.shape[0] == 0
    if empty_batch and any(isinstance(d, int) and not isinstance(d, bool) and d <= 0
                           for d in _ints(kwargs["dilation"])):
        return "non-positive dilation with an empty batch"
    return None


@pytest.mark.slow
@pytest.mark.skipif(TORCH is None, reason="the fuzz compares with torch")
@pytest.mark.parametrize("op", ["conv1d", "conv2d"])
def test_fuzz_against_torch(op):
    rng = np.random.default_rng(20261121 + (op == "conv2d"))
    fn = numbaconv.conv1d if op == "conv1d" else numbaconv.conv2d
    accepted_invalid, rejected_valid, wrong, crashes, ran = [], [], [], [], 0
    divergences = {}
    for case in range(CASES_PER_FAMILY):
        x, w, b, kwargs = random_case(rng, op)
        expected = torch_conv(TORCH, op, x, w, b, **kwargs)
        try:
            out = fn(x, w, b, **kwargs)
        except (ValueError, TypeError) as exc:
            if not isinstance(expected, Exception):
                why = documented_divergence(x, kwargs, op)
                if why:
                    divergences[why] = divergences.get(why, 0) + 1
                else:
                    rejected_valid.append((case, kwargs, x.shape, w.shape, str(exc)))
            continue
        except Exception as exc:  # anything else is a crash
            crashes.append((case, kwargs, x.shape, w.shape, repr(exc)))
            continue
        ran += 1
        why = documented_divergence(x, kwargs, op)
        if why:
            divergences[why] = divergences.get(why, 0) + 1
            continue
        if isinstance(expected, Exception):
            accepted_invalid.append((case, kwargs, x.shape, w.shape, str(expected)[:200]))
            continue
        scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
        if out.shape != expected.shape or (
                out.size and np.max(np.abs(out - expected)) > 2e-4 * scale):
            wrong.append((case, kwargs, x.shape, w.shape))
    report = (f"{op}: {CASES_PER_FAMILY} cases, {ran} computed, documented divergences "
              f"{divergences}; crashes {crashes[:3]}, "
              f"accepted invalid {accepted_invalid[:3]}, rejected valid {rejected_valid[:3]}, "
              f"wrong {wrong[:3]}")
    assert not (crashes or accepted_invalid or rejected_valid or wrong), report
    assert ran > CASES_PER_FAMILY // 5, report  # the sweep must exercise real computations
    print(report)
