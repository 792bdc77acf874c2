"""Numba's on-disk kernel cache unusable or corrupt: every call still works."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import warnings, numpy as np, numbaconv
warnings.simplefilter("always")
x = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
for algorithm in ("direct", "gemm"):
    a = numbaconv.conv2d(x, w, padding=1, algorithm=algorithm)
    b = numbaconv.conv2d(x, w, padding=1, algorithm="direct")
    assert np.allclose(a, b, atol=1e-5), algorithm
print("ok")
"""


def run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)


def test_unusable_cache_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run(blocker / "cache")  # below a regular file: cannot be created, even by root
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


@pytest.mark.slow
def test_corrupt_cache_files_are_recompiled_with_a_warning(tmp_path):
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    cached = [p for p in Path(tmp_path).rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert cached, "the first run should have filled the cache"
    for path in cached:
        path.write_bytes(b"garbage")
    second = run(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.strip() == "ok"
    assert "compiling it without the cache" in second.stderr
