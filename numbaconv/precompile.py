"""Compile the common kernels ahead of time: ``python -m numbaconv compile`` / ``numbaconv.compile()``.

A kernel compiles on its first call in a new environment (seconds each; then it is cached
on disk, see :mod:`numbaconv.cpu.dispatch`). This module makes those first calls up front,
on small arrays, one group of kernels per process so that every core compiles at once
(separate processes filling the same disk cache: Numba's compiler holds a global lock, so
threads would take turns). A last pass in the calling process loads everything back from
the cache and compiles whatever is still missing, so that the cache is complete even if
two processes raced to write the same index file.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from .errors import CompileWarning

def _winograd(dtype):
    from . import conv2d

    x, w = _data((2, 32, 12, 12), dtype), _data((32, 32, 3, 3), dtype)
    conv2d(x, w, padding=1)  # blocked pipeline
    conv2d(_data((1, 512, 4, 4), dtype), _data((512, 512, 3, 3), dtype), padding=1)  # staged


def _direct(dtype):
    from . import conv2d

    conv2d(_data((1, 8, 12, 12), dtype), _data((16, 8, 3, 3), dtype), stride=2, padding=1)
    conv2d(_data((1, 4, 10, 10), dtype), _data((2, 4, 3, 3), dtype), padding=1)  # few channels
    conv2d(_data((1, 16, 10, 10), dtype), _data((16, 8, 3, 3), dtype), padding=1,
           groups=2)  # grouped


def _gemm(dtype):
    from . import conv2d

    from . import conv_transpose2d

    conv2d(_data((1, 32, 8, 8), dtype), _data((32, 32, 1, 1), dtype))  # pointwise
    conv2d(_data((1, 32, 8, 8), dtype), _data((32, 32, 1, 1), dtype), stride=2)  # subsampled
    conv2d(_data((1, 32, 1, 1), dtype), _data((32, 32, 1, 1), dtype))  # vector products
    conv2d(_data((1, 32, 16, 16), dtype), _data((32, 32, 3, 3), dtype), padding=12,
           dilation=12)  # per tap (mostly padding)
    conv2d(_data((2, 32, 6, 6), dtype), _data((32, 32, 3, 3), dtype), stride=2,
           padding=1)  # im2col of the whole batch
    conv_transpose2d(_data((2, 16, 4, 4), dtype), _data((16, 8, 4, 4), dtype), stride=2,
                     padding=1)  # matrix product + scatter-add


def _depthwise(dtype):
    from . import conv2d

    lanes = 16
    for size, stride in ((64, 1), (24, 1), (24, 2), (12, 1)):
        conv2d(_data((1, lanes, size, size), dtype), _data((lanes, 1, 3, 3), dtype),
               stride=stride, padding=1, groups=lanes)
    conv2d(_data((1, 6, 30, 30), dtype), _data((6, 1, 5, 5), dtype), padding=2, groups=6)


def _pooling(dtype):
    from . import avg_pool2d, max_pool2d, max_unpool2d

    x = _data((1, 4, 12, 12), dtype)
    out, indices = max_pool2d(x, 2, return_indices=True)
    max_unpool2d(out, indices, 2)
    max_pool2d(x, 2)
    avg_pool2d(x, 2)


def _layers(dtype):
    from . import (adaptive_avg_pool2d, adaptive_max_pool2d, batch_norm, group_norm,
                   hardswish, layer_norm)

    x = _data((2, 4, 6, 6), dtype)
    stats = np.zeros(4, dtype), np.ones(4, dtype)
    batch_norm(x, *stats, training=True)
    adaptive_avg_pool2d(x, 1)
    adaptive_max_pool2d(x, 2, return_indices=True)
    group_norm(x, 2)
    layer_norm(x, 6)
    hardswish(x)


#: Name shown -> function of the dtype making the first calls. Each group compiles kernels
#: the others do not, except small shared ones (the padding kernel, the launcher), which
#: the last pass completes.
GROUPS = {"Winograd 3x3": _winograd, "direct": _direct,
          "GEMM / pointwise / transposed": _gemm, "depthwise": _depthwise, "pooling": _pooling,
          "normalisation, adaptive pooling": _layers}
DTYPES = ("float32", "float64")


def _data(shape, dtype):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def _run_group(name: str, dtype: str) -> float:
    """In a worker process: the group's first calls; their seconds."""
    warnings.simplefilter("ignore", CompileWarning)  # the progress bar says it
    start = time.perf_counter()
    GROUPS[name](dtype)
    return time.perf_counter() - start


def compile(dtypes=("float32",), processes: int | None = None, progress: bool = True) -> float:
    """Compile the kernels of the common layers (3x3 Winograd, direct, pointwise/GEMM,
    transposed, depthwise, pooling, normalisation) for ``dtypes`` into Numba's disk cache;
    returns the seconds taken.

    ``processes``: how many compile at once (default: every core). Later calls in any
    process of this environment then start without compiling. ``progress`` shows a tqdm
    bar on stderr.
    """
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"compile: dtypes must be among {DTYPES}, got {dtype!r}")
    jobs = [(name, dtype) for dtype in dtypes for name in GROUPS]
    processes = max(1, min(processes or os.cpu_count() or 1, len(jobs)))
    start = time.perf_counter()
    bar = _progress_bar(len(jobs) + 1, progress)
    # spawn: a fresh interpreter per worker (fork would copy this process's threads).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = {pool.submit(_run_group, *job): job for job in jobs}
        for future in as_completed(futures):
            name, dtype = futures[future]
            seconds = future.result()
            bar(f"{name} ({dtype}) {seconds:.1f} s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CompileWarning)
        for name, dtype in jobs:  # load back, and complete what a race may have dropped
            GROUPS[name](dtype)
    missing = sum(issubclass(w.category, CompileWarning) for w in caught)
    total = time.perf_counter() - start
    bar(f"checked: {missing} kernels were not in the cache yet and compiled now; "
        f"{total:.0f} s in all" if missing else f"checked: all cached; {total:.0f} s in all")
    return total


def _progress_bar(total: int, show: bool):
    """A function advancing a tqdm progress bar on stderr by one step with a message."""
    if not show:
        return lambda message: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="numbaconv compile", unit="group", file=sys.stderr)

    def step(message):
        bar.set_postfix_str(message)
        bar.update(1)
        if bar.n == total:
            bar.close()
    return step
