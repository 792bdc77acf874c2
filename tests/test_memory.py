"""The memory guard: MemoryError with the figures before allocating; auto picks what fits."""

import numpy as np
import pytest

import numbaconv
from numbaconv import config
from numbaconv.planner import needed_bytes


@pytest.fixture
def limit():
    yield numbaconv.set_memory_limit
    numbaconv.set_memory_limit(None)


X = np.zeros((8, 64, 56, 56), np.float32)
W = np.zeros((64, 64, 3, 3), np.float32)


def test_over_the_limit_raises_memory_error_with_the_figures(limit):
    limit(2**20)  # 1 MiB: less than the 6 MiB output alone
    for name in ("direct", "gemm", "winograd_f4x4"):
        with pytest.raises(MemoryError, match=r"GiB.*memory limit.*NUMBACONV_MEMORY_LIMIT"):
            numbaconv.conv2d(X, W, padding=1, algorithm=name)
    with pytest.raises(MemoryError):
        numbaconv.conv2d(X, W, padding=1)  # auto: nothing fits either


@pytest.mark.parametrize("algorithm", ["auto", "direct", "winograd_f4x4"])
def test_plan_over_the_limit_says_it_does_not_fit(limit, algorithm):
    limit(2**20)
    plan = numbaconv.plan(X, W, padding=1, algorithm=algorithm)  # no MemoryError: a plan
    assert not plan.fits and plan.output_shape == X.shape
    assert "DOES NOT FIT" in repr(plan) and "memory limit" in plan.reason
    assert f"{needed_bytes(plan.spec, plan.algorithm) / 2**30:.3g} GiB" in plan.reason
    limit(None)
    assert numbaconv.plan(X, W, padding=1, algorithm=algorithm).fits


def test_auto_falls_back_to_an_algorithm_that_fits(limit):
    x = np.random.default_rng(0).standard_normal((2, 64, 20, 20)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((64, 64, 3, 3)).astype(np.float32)
    spec = numbaconv.plan(x, w, padding=1).spec
    assert numbaconv.plan(x, w, padding=1).algorithm == "winograd_f4x4"
    needs = {name: needed_bytes(spec, name) for name in ("direct", "gemm", "winograd_f4x4")}
    smallest = min(needs, key=needs.get)
    assert needs["winograd_f4x4"] > needs[smallest]
    limit(needs[smallest])  # exactly enough for the leanest algorithm only
    plan = numbaconv.plan(x, w, padding=1)
    assert plan.algorithm == smallest and "memory limit" in plan.reason
    out = numbaconv.conv2d(x, w, padding=1)
    limit(None)
    np.testing.assert_allclose(out, numbaconv.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("text, expected", [("512M", 512 * 2**20), ("8G", 8 * 2**30),
                                            ("123456", 123456), ("0.5", 0.5), ("2kb", 2048)])
def test_memory_limit_syntax(text, expected):
    assert config.parse_memory_limit(text) == expected


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("NUMBACONV_MEMORY_LIMIT", "1M")
    assert config.memory_limit() == 2**20
    assert not numbaconv.plan(X, W, padding=1).fits
    with pytest.raises(MemoryError):
        numbaconv.conv2d(X, W, padding=1)
    monkeypatch.setenv("NUMBACONV_MEMORY_LIMIT", "1.0")
    assert config.memory_limit() == config.available_memory()


def test_bad_limit_is_rejected():
    with pytest.raises(ValueError, match="set_memory_limit"):
        numbaconv.set_memory_limit(-5)


def test_environment_lookup_sees_every_change(monkeypatch):
    """memory_limit reads the environment through a fast lookup; it must see variables
    set, changed and removed after numbaconv was imported, as os.environ.get does."""
    lookup = config._environment_lookup("NUMBACONV_TEST_VARIABLE")
    monkeypatch.delenv("NUMBACONV_TEST_VARIABLE", raising=False)
    assert lookup() is None
    monkeypatch.setenv("NUMBACONV_TEST_VARIABLE", "2G")
    assert lookup() == "2G"
    monkeypatch.setenv("NUMBACONV_TEST_VARIABLE", "3M")
    assert lookup() == "3M"
    monkeypatch.delenv("NUMBACONV_TEST_VARIABLE")
    assert lookup() is None


def test_transposed_matrix_product_is_guarded_too(limit):
    """The strided transposed convolution's matrix product checks the limit before
    allocating, with the same figures in its message."""
    x = np.zeros((8, 64, 28, 28), np.float32)
    w = np.zeros((64, 32, 4, 4), np.float32)
    limit(2**20)  # the (8, 32, 56, 56) output alone is 3 MiB
    with pytest.raises(MemoryError, match=r"conv_transpose2d.*GiB.*memory limit.*"
                                          r"NUMBACONV_MEMORY_LIMIT"):
        numbaconv.conv_transpose2d(x, w, stride=2, padding=1)
    limit(None)
    assert numbaconv.conv_transpose2d(x, w, stride=2, padding=1).shape == (8, 32, 56, 56)


def test_a_repeated_transposed_convolution_meets_a_lowered_limit(limit):
    """The route a transposed convolution running as a convolution keeps for its repeats
    (``transposed._ROUTES``) is checked against the limit on every call."""
    x = np.ones((2, 16, 20, 20), np.float32)
    w = np.ones((16, 8, 3, 3), np.float32)
    first = numbaconv.conv_transpose2d(x, w, padding=1)
    np.testing.assert_array_equal(numbaconv.conv_transpose2d(x, w, padding=1), first)
    limit(2**10)
    with pytest.raises(MemoryError, match="conv"):
        numbaconv.conv_transpose2d(x, w, padding=1)
    limit(None)
    np.testing.assert_array_equal(numbaconv.conv_transpose2d(x, w, padding=1), first)
