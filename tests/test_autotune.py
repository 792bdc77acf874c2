"""Autotuning: times the candidates once, persists the winner, survives bad caches."""

import json

import numpy as np
import pytest

import numbaconv
from numbaconv import autotune

X = np.random.default_rng(0).standard_normal((1, 16, 10, 10)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((16, 16, 3, 3)).astype(np.float32)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    autotune.clear(memory_only=True)
    autotune._warned.clear()
    yield tmp_path
    autotune.clear(memory_only=True)


def test_autotune_times_supported_algorithms_and_persists(cache_dir):
    plan = numbaconv.plan(X, W, padding=1, algorithm="autotune")
    assert plan.algorithm in numbaconv.algorithms()
    assert "autotuned" in plan.reason and "timed now" in plan.reason
    data = json.loads((cache_dir / "autotune.json").read_text())
    (entry,) = data["entries"].values()
    assert entry["algorithm"] == plan.algorithm
    assert set(entry["ms"]) == {"direct", "gemm", "winograd_f2x2", "winograd_f4x4"}
    assert entry["ms"][plan.algorithm] == min(entry["ms"].values())
    # A new process (simulated: memory dropped) reads the decision back without timing.
    autotune.clear(memory_only=True)
    again = numbaconv.plan(X, W, padding=1, algorithm="autotune")
    assert again.algorithm == plan.algorithm and "cached" in again.reason
    out = numbaconv.conv2d(X, W, padding=1, algorithm="autotune")
    ref = numbaconv.conv2d(X, W, padding=1, algorithm="gemm")
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_key_separates_specs(cache_dir):
    numbaconv.plan(X, W, padding=1, algorithm="autotune")
    numbaconv.plan(X[:, :, :8], W, padding=1, algorithm="autotune")
    data = json.loads((cache_dir / "autotune.json").read_text())
    assert len(data["entries"]) == 2
    key = next(iter(data["entries"]))
    assert "threads=" in key and f"numbaconv={numbaconv.__version__}" in key


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": 0, "entries": {}}),
                                     json.dumps([1, 2]), json.dumps({"format": 1, "entries": 3})])
def test_corrupt_or_stale_cache_is_ignored_with_a_warning(cache_dir, content):
    (cache_dir / "autotune.json").write_text(content)
    with pytest.warns(RuntimeWarning, match="ignoring the autotune cache"):
        plan = numbaconv.plan(X, W, padding=1, algorithm="autotune")
    assert plan.algorithm in numbaconv.algorithms()
    # ... and rewritten in the current format.
    assert json.loads((cache_dir / "autotune.json").read_text())["format"] == autotune.FORMAT


def test_bogus_entry_is_retimed(cache_dir):
    numbaconv.plan(X, W, padding=1, algorithm="autotune")
    path = cache_dir / "autotune.json"
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["algorithm"] = "no_such_algorithm"
    path.write_text(json.dumps(data))
    autotune.clear(memory_only=True)
    plan = numbaconv.plan(X, W, padding=1, algorithm="autotune")
    assert plan.algorithm in numbaconv.algorithms() and "timed now" in plan.reason


def test_unwritable_cache_warns_and_carries_on(tmp_path, monkeypatch):
    # A cache directory below a regular file can never be created, even by root.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(blocker / "sub"))
    autotune.clear(memory_only=True)
    autotune._warned.clear()
    with pytest.warns(RuntimeWarning, match="cannot write the autotune cache"):
        plan = numbaconv.plan(X, W, padding=1, algorithm="autotune")
    assert plan.algorithm in numbaconv.algorithms()
    autotune.clear(memory_only=True)
