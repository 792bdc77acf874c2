"""The pool of reused blocks behind large results (numbaconv.array_pool)."""

import threading

import numpy as np
import pytest

from numbaconv import array_pool

BIG = (128, 1024)  # 512 KiB of float32: pooled
SMALL = (16, 16)


@pytest.fixture(autouse=True)
def fresh_pool():
    array_pool.set_limit(64 << 20)
    array_pool.release()
    yield
    array_pool.set_limit(None)
    array_pool.release()


def address(a):
    return a.__array_interface__["data"][0]


def test_arrays_are_ordinary_c_contiguous_writable_aligned():
    for dtype in (np.float32, np.float64, np.int64):
        a = array_pool.empty(BIG, dtype)
        assert a.shape == BIG and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
        assert address(a) % array_pool.ALIGNMENT == 0
        a[...] = 7
        assert a.sum() == 7 * a.size
    assert array_pool.empty(BIG[0] * BIG[1], np.float32).shape == (BIG[0] * BIG[1],)
    like = array_pool.empty_like(np.zeros(BIG, np.float64))
    assert like.shape == BIG and like.dtype == np.float64


def test_small_arrays_are_plain_numpy():
    a = array_pool.empty(SMALL, np.float32)
    assert a.base is None and a.shape == SMALL


def test_a_freed_block_is_reused_and_counted():
    a = array_pool.empty(BIG, np.float32)
    where = address(a)
    assert array_pool.pooled_bytes() == 0
    del a
    assert array_pool.pooled_bytes() == array_pool.size_class(BIG[0] * BIG[1] * 4)
    b = array_pool.empty(BIG, np.float32)
    assert address(b) == where
    assert array_pool.pooled_bytes() == 0
    # a slightly smaller array of the same size class takes the same block
    del b
    c = array_pool.empty((BIG[0] - 1, BIG[1]), np.float32)
    assert address(c) == where


def test_a_view_keeps_its_block_in_use():
    a = array_pool.empty(BIG, np.float32)
    a[...] = 1.0
    view = a[1:].reshape(-1)[::2]
    where = address(a)
    del a
    b = array_pool.empty(BIG, np.float32)
    assert address(b) != where  # the view still reads the old block
    b[...] = 2.0
    assert np.all(view == 1.0)
    del view, b
    assert array_pool.pooled_bytes() == 2 * array_pool.size_class(BIG[0] * BIG[1] * 4)


def test_limit_bounds_the_free_blocks_least_recent_dropped_first():
    size = array_pool.size_class(BIG[0] * BIG[1] * 4)
    array_pool.set_limit(2 * size)
    small = [array_pool.empty(BIG, np.float32) for _ in range(3)]
    double = array_pool.empty((2 * BIG[0], BIG[1]), np.float32)
    where = address(double)
    del small
    assert array_pool.pooled_bytes() == 2 * size  # the third one did not fit
    del double  # the least recently returned (the small blocks) make room for it
    assert array_pool.pooled_bytes() == 2 * size
    assert address(array_pool.empty((2 * BIG[0], BIG[1]), np.float32)) == where
    assert array_pool.pooled_bytes() == 2 * size  # (the array above was freed at once)
    array_pool.release()
    assert array_pool.pooled_bytes() == 0


def test_limit_zero_turns_pooling_off():
    array_pool.set_limit(0)
    a = array_pool.empty(BIG, np.float32)
    assert a.base is None
    array_pool.set_limit(64 << 20)
    b = array_pool.empty(BIG, np.float32)
    array_pool.set_limit(0)
    del b
    assert array_pool.pooled_bytes() == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "1G"])
def test_set_limit_rejects_non_byte_counts(bad):
    with pytest.raises(ValueError, match="nbytes"):
        array_pool.set_limit(bad)


def test_threads_never_share_a_block():
    errors = []

    def work(value):
        for _ in range(200):
            a = array_pool.empty(BIG, np.float32)
            a.fill(value)
            if not np.all(a == value):
                errors.append(value)
            del a

    threads = [threading.Thread(target=work, args=(float(v),)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert array_pool.pooled_bytes() <= 4 * array_pool.size_class(BIG[0] * BIG[1] * 4)


def test_convolution_results_come_from_the_pool_and_are_right():
    import numbaconv

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 96, 96), dtype=np.float32)
    w = rng.standard_normal((16, 8, 1, 1), dtype=np.float32)
    first = numbaconv.conv2d(x, w)
    expected = np.einsum("nchw,kc->nkhw", x, w[:, :, 0, 0])
    np.testing.assert_allclose(first, expected, rtol=1e-4, atol=1e-4)
    where = address(first)
    del first
    second = numbaconv.conv2d(x, 2 * w)
    assert address(second) == where
    np.testing.assert_allclose(second, 2 * expected, rtol=1e-4, atol=1e-4)
