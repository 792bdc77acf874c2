"""Runs the GPU kernel suite (``tests_cuda``) in Numba's CUDA simulator, as its own process.

The simulator must be switched on before ``numba.cuda`` is first imported, and this
process imports the real target for the PTX check, so the suite gets a fresh
interpreter. Run it directly for its own report: ``python -m pytest tests_cuda``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.importorskip("numba_cuda", reason="needs numba-cuda: pip install -e '.[cuda]'")

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_kernels_in_the_cuda_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests_cuda")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout and " skipped" not in result.stdout, report
