"""Winograd's transformed-weight cache: sized by memory, exact on reuse."""

import numpy as np
import pytest

import numbaconv
from numbaconv.cpu import weight_cache
from numbaconv.cpu.weight_cache import TRANSFORMED_WEIGHTS, TransformCache


@pytest.fixture
def fresh_cache():
    TRANSFORMED_WEIGHTS.clear()
    yield TRANSFORMED_WEIGHTS
    TRANSFORMED_WEIGHTS.clear()


def test_a_whole_network_of_winograd_layers_stays_cached(fresh_cache, rng):
    # More layers than the old 16-entry cap (googlenet has 19 Winograd layers, densenet121
    # 58): a second forward pass must find every transform.
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    weights = [rng.standard_normal((16, 16, 3, 3)).astype(np.float32) for _ in range(24)]
    first = [numbaconv.conv2d(x, w, padding=1, algorithm="winograd_f4x4") for w in weights]
    assert len(fresh_cache) == 24
    computed = []
    original = TransformCache.get

    def spy(self, tag, weight, compute):
        return original(self, tag, weight, lambda: computed.append(1) or compute())

    TransformCache.get = spy
    try:
        second = [numbaconv.conv2d(x, w, padding=1, algorithm="winograd_f4x4") for w in weights]
    finally:
        TransformCache.get = original
    assert computed == []  # every transform came from the cache
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_changed_weights_are_transformed_again(fresh_cache, rng):
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    before = numbaconv.conv2d(x, w, padding=1, algorithm="winograd_f4x4")
    w[3, 2, 1, 1] += 1.0  # in place: same address, new values
    after = numbaconv.conv2d(x, w, padding=1, algorithm="winograd_f4x4")
    expected = numbaconv.conv2d(x, w, padding=1, algorithm="direct")
    np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(before, after)


def test_the_budget_is_in_bytes_least_recently_used_first():
    cache = TransformCache(max_bytes=3 * 1000)
    weights = [np.full(100, float(i)) for i in range(5)]  # 800 bytes each
    for w in weights:
        cache.get("t", w, lambda w=w: [w[:50] * 2])  # + 400 bytes of "transform"
    assert len(cache) == 2 and cache.nbytes <= 3000  # 1200 bytes an entry
    hits = []
    cache.get("t", weights[4], lambda: hits.append("recomputed") or [weights[4][:50]])
    assert hits == []


def test_the_default_budget_follows_memory_or_the_environment(monkeypatch):
    assert 256 << 20 <= weight_cache.default_max_bytes() <= 2 << 30
    monkeypatch.setenv("NUMBACONV_WEIGHT_CACHE", "300M")
    assert weight_cache.default_max_bytes() == 300 << 20
