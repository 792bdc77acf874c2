"""inf and NaN: every algorithm against torch, and auto exactly like torch."""

import numpy as np
import pytest

import numbaconv
from conftest import TORCH
from torch_oracle import torch_conv

ALGORITHMS = ["auto", "direct", "gemm", "winograd_f2x2", "winograd_f4x4"]


def poisoned(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 1, 2, 3] = np.inf
    x[-1, 0, -2, 1] = np.nan
    x[0, -1, -1, -1] = -np.inf
    return x


def nonfinite_pattern(a):
    return np.isnan(a), np.isposinf(a), np.isneginf(a)


@pytest.fixture
def expected(torch):
    return lambda x, w, **kw: torch_conv(torch, "conv2d", x, w, None, **(
        dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | kw))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, kwargs", [
    ((2, 16, 12, 13), dict(padding=1)),
    ((1, 16, 40, 40), dict(padding=1)),  # enough tiles for Winograd's blocks
    ((1, 16, 20, 20), dict(padding=2, dilation=2)),
])
def test_auto_propagates_inf_and_nan_like_torch(xs, kwargs, dtype, expected, rng):
    x = poisoned(rng, xs, dtype)
    w = rng.standard_normal((16, xs[1], 3, 3)).astype(dtype)
    assert numbaconv.plan(x, w, **kwargs).algorithm.startswith("winograd")
    reference = expected(x, w, **kwargs)
    for algorithm in ("auto", "direct", "gemm"):
        out = numbaconv.conv2d(x, w, **kwargs, algorithm=algorithm)
        for ours, theirs in zip(nonfinite_pattern(out), nonfinite_pattern(reference)):
            np.testing.assert_array_equal(ours, theirs, err_msg=algorithm)
        finite = np.isfinite(reference)
        np.testing.assert_allclose(out[finite], reference[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("algorithm", ["winograd_f2x2", "winograd_f4x4"])
def test_explicit_winograd_spreads_non_finite_values_within_tiles(algorithm, expected, rng):
    # Documented behaviour: every output torch makes non-finite is non-finite here too
    # (a non-finite input may spoil its whole tile, as NaN), and the outputs that stay
    # finite are right.
    x = poisoned(rng, (2, 16, 12, 13), np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    reference = expected(x, w, padding=1)
    out = numbaconv.conv2d(x, w, padding=1, algorithm=algorithm)
    assert np.all(~np.isfinite(out)[~np.isfinite(reference)])
    both = np.isfinite(out)
    np.testing.assert_allclose(out[both], reference[both], rtol=1e-3, atol=1e-3)


def test_finite_inputs_do_not_trigger_the_fallback(rng, monkeypatch):
    from numbaconv.cpu import gemm

    def refuse(*args, **kwargs):
        raise AssertionError("finite inputs must stay on Winograd")

    monkeypatch.setattr(gemm, "run", refuse)
    x = rng.standard_normal((1, 16, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    numbaconv.conv2d(x, w, padding=1)
