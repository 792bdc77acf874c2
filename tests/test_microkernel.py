"""The register-tiled matrix product behind Winograd and GEMM, against NumPy in float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numbaconv import isa
from numbaconv.cpu.microkernel import _PACK_MIN_ROWS, matmul, matmul_bt, workspace_size
from numbaconv.isa import MR, NV, VECTOR_BYTES

PANEL32 = NV * VECTOR_BYTES // 4  # columns of one register tile in float32


def product(a, b, out=None, work=None):
    out = np.full((a.shape[0], b.shape[1]), np.nan, a.dtype) if out is None else out
    work = np.full(workspace_size(a.shape[1]), np.nan, a.dtype) if work is None else work
    matmul(a, b, out, work)
    return out


def assert_product(c, a, b):
    expected = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64) + 1e-30
    tolerance = 4 * np.finfo(a.dtype).eps * a.shape[1] ** 0.5
    assert c.shape == expected.shape
    assert np.all(np.abs(c - expected) <= tolerance * scale + 1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [
    (1, 1, 1), (MR, 7, PANEL32), (MR - 1, 3, 5), (2 * MR + 1, 300, PANEL32 + 17),
    (392, 64, 64), (13, 2 * 256 + 5, 3 * PANEL32 + 1), (100, 17, 16), (7, 1, 200),
    # several column blocks (192 float32, 96 float64 columns) and depth blocks, ragged,
    # b read in place (fewer rows than _PACK_MIN_ROWS) and copied into panels
    (13, 2 * 256 + 3, 2 * 192 + PANEL32 + 5), (_PACK_MIN_ROWS + 1, 2 * 256 + 3, 2 * 192 + 5),
])
def test_matches_numpy(rng, dtype, shape):
    m, k, n = shape
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    a0, b0 = a.copy(), b.copy()
    assert_product(product(a, b), a, b)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_empty_shapes():
    z = product(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32))
    np.testing.assert_array_equal(z, np.zeros((3, 4), np.float32))
    assert product(np.ones((0, 5)), np.ones((5, 4))).shape == (0, 4)
    assert product(np.ones((2, 5)), np.ones((5, 0))).shape == (2, 0)


def test_strided_views_touch_only_their_window(rng):
    a = rng.standard_normal((50, 40)).astype(np.float32)
    b = rng.standard_normal((60, 90)).astype(np.float32)
    c = np.zeros((70, 100), np.float32)
    a_view, b_view, c_view = a[3:40, 5:35], b[10:40, 7:80], c[2:39, 10:83]
    product(a_view, b_view, out=c_view)
    assert_product(c_view, a_view, b_view)
    outside = np.ones(c.shape, bool)
    outside[2:39, 10:83] = False
    assert not c[outside].any()


def test_propagates_nan_and_inf():
    a = np.ones((MR + 2, 8), np.float32)
    b = np.ones((8, PANEL32 + 3), np.float32)
    a[1, 2] = np.nan
    b[3, 0] = np.inf
    c = product(a, b)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(c), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(c), np.isinf(expected))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, _PACK_MIN_ROWS + 2 * MR + 2), k=st.integers(1, 300), n=st.integers(1, 420),
       double=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_property(m, k, n, double, seed):
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    assert_product(product(a, b), a, b)


def test_rejects_bad_arguments():
    a, b = np.ones((4, 5), np.float32), np.ones((5, 6), np.float32)
    work = np.empty(workspace_size(5), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        matmul(a, np.ones((4, 6), np.float32), np.empty((4, 6), np.float32), work)
    with pytest.raises(ValueError, match="shapes"):
        matmul(a, b, np.empty((4, 7), np.float32), work)
    with pytest.raises(ValueError, match="contiguous"):
        matmul(np.ones((5, 4), np.float32).T, b, np.empty((4, 6), np.float32), work)
    with pytest.raises(ValueError, match="work"):
        matmul(a, b, np.empty((4, 6), np.float32), np.empty(3, np.float32))


def test_vector_width_follows_the_cpu(monkeypatch):
    features = isa.host_features()
    assert VECTOR_BYTES == (64 if features.get("avx512f") and not isa.portable_cpu_name()
                            else 32)
    assert NV == (4 if VECTOR_BYTES == 64 else 2)
    assert isa.panel_positions(4) == NV * VECTOR_BYTES // 4
    assert isa.lanes(8) == VECTOR_BYTES // 8
    # a portable build compiles for another CPU: 32-byte vectors at most, said so
    monkeypatch.setenv("NUMBA_CPU_NAME", "haswell")
    assert isa._vector_bytes() == 32
    assert "NUMBA_CPU_NAME=haswell" in isa.vector_isa()


@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, _PACK_MIN_ROWS + 2 * MR + 2), k=st.integers(1, 600), n=st.integers(1, 420),
       strided=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_accumulates_onto_views(m, k, n, strided, seed):
    """accumulate=True adds onto c; a, b and c may be views with longer rows."""
    rng = np.random.default_rng(seed)
    pad = 5 if strided else 0
    a = rng.standard_normal((m, k + pad)).astype(np.float32)[:, pad:]
    b = rng.standard_normal((k, n + pad)).astype(np.float32)[:, :n]
    c_full = rng.standard_normal((m, n + pad)).astype(np.float32)
    c = c_full[:, pad:]
    start, outside = c.astype(np.float64), c_full[:, :pad].copy()
    matmul(a, b, c, np.full(workspace_size(k), np.nan, np.float32), accumulate=True)
    expected = start + a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(start) + np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    assert np.all(np.abs(c - expected) <= 4 * np.finfo(np.float32).eps * k ** 0.5 * scale)
    np.testing.assert_array_equal(c_full[:, :pad], outside)  # nothing else written


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 3 * MR + 1), k=st.integers(1, 600), n=st.integers(1, 420),
       double=st.booleans(), strided=st.booleans(), accumulate=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_transposed_second_operand(m, k, n, double, strided, accumulate, seed):
    """matmul_bt(a, bt, c) is c (+)= a @ bt.T: bt (N, K) transposed as it is packed, in
    whole register blocks and by loops for a ragged depth (several depth blocks of 256)
    and a last partial vector of columns; views with longer rows; nothing outside c's
    window written; a NaN-filled work buffer never leaks into the result."""
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    pad = 3 if strided else 0
    a = rng.standard_normal((m, k + pad)).astype(dtype)[:, pad:]
    bt = rng.standard_normal((n, k + pad)).astype(dtype)[:, :k]
    c_full = rng.standard_normal((m, n + pad)).astype(dtype)
    c = c_full[:, pad:]
    start, outside = c.astype(np.float64), c_full[:, :pad].copy()
    matmul_bt(a, bt, c, np.full(workspace_size(k), np.nan, dtype), accumulate)
    product = a.astype(np.float64) @ bt.T.astype(np.float64)
    expected = start + product if accumulate else product
    scale = np.abs(start) * accumulate + np.abs(a).astype(np.float64) @ np.abs(bt.T)
    assert np.all(np.abs(c - expected) <= 4 * np.finfo(dtype).eps * k ** 0.5 * scale + 1e-30)
    np.testing.assert_array_equal(c_full[:, :pad], outside)


def test_transposed_rejects_bad_arguments():
    a, bt = np.ones((4, 5), np.float32), np.ones((6, 5), np.float32)
    work = np.empty(workspace_size(5), np.float32)
    with pytest.raises(ValueError, match="shapes"):  # bt's rows must run over a's depth
        matmul_bt(a, np.ones((5, 6), np.float32), np.empty((4, 5), np.float32), work)
    with pytest.raises(ValueError, match="shapes"):
        matmul_bt(a, bt, np.empty((4, 5), np.float32), work)
    with pytest.raises(ValueError, match="contiguous"):
        matmul_bt(a, np.ones((5, 6), np.float32).T, np.empty((4, 6), np.float32), work)
