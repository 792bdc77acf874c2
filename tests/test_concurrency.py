"""Many Python threads calling numbaconv at once get correct results (and no abort)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import numbaconv

THREADS = 8
CALLS_PER_THREAD = 25

CASES = [
    ((2, 16, 20, 20), (16, 16, 3, 3), dict(padding=1), "winograd_f4x4"),
    ((2, 16, 20, 20), (16, 16, 3, 3), dict(padding=1), "winograd_f2x2"),
    ((1, 8, 17, 19), (12, 8, 3, 3), dict(stride=2, padding=1), "gemm"),
    ((3, 6, 15, 15), (6, 1, 3, 3), dict(padding=1, groups=6), "direct"),
    ((2, 4, 16, 16), (8, 2, 5, 5), dict(padding=2, groups=2), "direct"),
    ((1, 16, 12, 12), (16, 16, 3, 3), dict(padding=2, dilation=2), "auto"),
    ((4, 32, 7, 7), (16, 32, 1, 1), {}, "auto"),
    ((1, 3, 30, 30), (8, 3, 7, 7), dict(stride=2, padding=3), "auto"),
]


def test_eight_threads_calling_at_once_get_correct_results():
    rng = np.random.default_rng(7)
    inputs = [(rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32))
              for xs, ws, _, _ in CASES]
    expected = [numbaconv.conv2d(x, w, **kw, algorithm=algo)
                for (x, w), (_, _, kw, algo) in zip(inputs, CASES)]

    x1 = rng.standard_normal((2, 4, 50)).astype(np.float32)
    w1 = rng.standard_normal((6, 2, 5)).astype(np.float32)
    expected_1d = numbaconv.conv1d(x1, w1, stride=2, padding=2, groups=2)

    def work(worker):
        errors = 0
        for round_ in range(CALLS_PER_THREAD):
            i = (worker + round_) % len(CASES)
            x, w = inputs[i]
            out = numbaconv.conv2d(x, w, **CASES[i][2], algorithm=CASES[i][3])
            errors += not np.allclose(out, expected[i], rtol=1e-5, atol=1e-5)
            if round_ % 5 == 0:
                out = numbaconv.conv1d(x1, w1, stride=2, padding=2, groups=2)
                errors += not np.allclose(out, expected_1d, rtol=1e-5, atol=1e-5)
        return errors

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))
    assert results == [0] * THREADS


@pytest.mark.slow
def test_workqueue_threading_layer_is_serialised_not_aborted(tmp_path):
    # Numba's workqueue layer aborts the process on concurrent parallel calls; numbaconv
    # must serialise them instead. Run the threaded test in a process forced onto it.
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", NUMBA_CACHE_DIR=str(tmp_path))
    code = ("import sys, numba; sys.path.insert(0, 'tests'); import test_concurrency as t; "
            "t.test_eight_threads_calling_at_once_get_correct_results(); "
            "print(numba.threading_layer())")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("workqueue")


def _conv_in_worker(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 6, 12, 12)).astype(np.float32)
    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    return (numbaconv.conv2d(x, w, padding=1, groups=6, algorithm="direct"),)


def _pool_in_worker(seed):
    x = np.random.default_rng(seed).standard_normal((2, 5, 12, 12)).astype(np.float32)
    return (numbaconv.max_pool2d(x, 3, stride=2, padding=1), numbaconv.avg_pool2d(x, 2),
            numbaconv.max_unpool2d(*numbaconv.max_pool2d(x, 2, return_indices=True), 2))


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("work", [_conv_in_worker, _pool_in_worker])
def test_process_pool_workers_compute_correct_results(method, work):
    # Every parallel kernel (convolutions and pooling alike) must run in a child forked
    # after the parent used it: GNU OpenMP kills such children in a parallel region.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    expected = [work(seed) for seed in range(3)]  # the parent runs kernels first
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as pool:
        results = list(pool.map(work, range(3)))
    for got, want in zip(results, expected):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
