"""Compiling says so, once; `python -m numbaconv compile` fills the cache ahead of time."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIRST_CALLS = """
import warnings, numpy as np, numbaconv
warnings.simplefilter("always")
x = np.ones((1, 2, 6, 6), np.float32)
read_only = x.copy()
read_only.setflags(write=False)
with warnings.catch_warnings(record=True) as caught:
    for array in (x, x, read_only):  # read-only inputs share the writeable one's kernel
        numbaconv.max_pool2d(array, 2)
print(sum(issubclass(w.category, numbaconv.CompileWarning) for w in caught))
for w in caught:
    print(w.message)
"""


def run_python(code, cache_dir, *args):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    return subprocess.run([sys.executable, *args] if args else [sys.executable, "-c", code],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_a_first_call_says_it_compiles_once_and_a_cached_one_says_nothing(tmp_path):
    first = run_python(FIRST_CALLS, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    count, *messages = first.stdout.strip().splitlines()
    assert count == "1", first.stdout  # three calls, one compile, one notice
    assert "compiling max_pool2d_rows (float32)" in messages[0]
    assert "once per environment" in messages[0] and "numbaconv compile" in messages[0]
    second = run_python(FIRST_CALLS, tmp_path)  # a new process, the cache filled
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.strip() == "0"


@pytest.mark.slow
def test_compile_command_fills_the_cache_for_the_common_kernels(tmp_path):
    result = run_python(None, tmp_path, "-m", "numbaconv", "compile", "--processes", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "checked" in result.stderr
    check = run_python("""
import warnings, numbaconv
from numbaconv import precompile
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    for group in precompile.GROUPS.values():
        group("float32")
print([str(w.message) for w in caught if issubclass(w.category, numbaconv.CompileWarning)])
""", tmp_path)
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.strip() == "[]"  # everything came from the cache


def test_compile_rejects_unknown_dtypes():
    import numbaconv

    with pytest.raises(ValueError, match="dtypes must be among"):
        numbaconv.compile(("float16",))
