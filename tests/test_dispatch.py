"""The launch path of every CPU kernel (numbaconv.cpu.dispatch): shares, counts, errors."""

import numba
import numpy as np
import pytest

from numbaconv.cpu.dispatch import parallel_kernel


@parallel_kernel
def fill_and_count(out, value, worker, workers):
    """out[i] = value + i over this share's items; returns how many it wrote."""
    written = 0
    for i in range(worker, out.size, workers):
        out[i] = value + i
        written += 1
    return written


@parallel_kernel
def last_share_fails(out, worker, workers):
    if worker == workers - 1:
        raise ValueError("the last share failed")
    out[worker] = 1.0
    return 0


@pytest.fixture(params=[1, 2])
def threads(request):
    before = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield numba.get_num_threads()
    numba.set_num_threads(before)


@pytest.mark.parametrize("size", [0, 1, 7, 1000])
def test_the_shares_cover_every_item_once_and_their_counts_add_up(threads, size):
    out = np.full(size, np.nan)
    assert fill_and_count(out, 0.5) == size
    np.testing.assert_array_equal(out, 0.5 + np.arange(size))
    out[:] = np.nan
    assert fill_and_count(out, 0.5, workers=1) == size  # fewer shares than threads
    np.testing.assert_array_equal(out, 0.5 + np.arange(size))


def test_an_error_in_a_share_is_raised_by_the_call(threads):
    with pytest.raises(ValueError, match="the last share failed"):
        last_share_fails(np.zeros(4))


@parallel_kernel
def doubled(values, out, worker, workers):
    for i in range(worker, values.size, workers):
        out[i] = 2 * values[i]
    return 0


def test_read_only_arrays_run_the_kernel_compiled_for_writeable_ones(threads):
    values, out = np.arange(5.0), np.zeros(5)
    doubled(values, out)
    compiled = list(doubled.dispatcher.signatures)
    values.setflags(write=False)
    out[:] = 0
    doubled(values, out)
    np.testing.assert_array_equal(out, 2 * np.arange(5.0))
    assert doubled.dispatcher.signatures == compiled  # no read-only copy compiled


def test_small_work_runs_as_one_share_on_the_calling_thread(threads):
    from numbaconv import config

    shares = np.zeros(2, np.int64)

    @parallel_kernel
    def count_shares(out, worker, workers):
        out[0] = workers
        return 0

    with config.one_share_for(config.SMALL_WORK - 1):
        count_shares(shares)
        assert shares[0] == 1 and config.small_work()
    assert not config.small_work()
    with config.one_share_for(config.SMALL_WORK):
        count_shares(shares)
    assert shares[0] == threads
