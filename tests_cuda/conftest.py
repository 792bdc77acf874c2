"""GPU kernel tests. They run in Numba's CUDA simulator unless NUMBA_ENABLE_CUDASIM=0 is set
(on a machine with a GPU), so this suite is a separate pytest run:

    python -m pytest tests_cuda            # simulator (CI)
    NUMBA_ENABLE_CUDASIM=0 python -m pytest tests_cuda   # the same tests on a real GPU

The variable must be set before numba.cuda is first imported, hence here, at the top.
The simulator runs one OS thread per CUDA thread: keep shapes tiny.
"""

import os
import sys

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# In CI numba-cuda and torch are mandatory: missing, they fail the run instead of skipping.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
if not IN_CI:
    pytest.importorskip("numba_cuda", reason="the GPU tests need numba-cuda: "
                                             "pip install -e '.[cuda]'")
from numba import cuda  # noqa: E402

try:
    import torch as TORCH
except ImportError:
    if IN_CI:
        raise
    TORCH = None


@pytest.fixture
def rng():
    return np.random.default_rng(4321)


@pytest.fixture(scope="session")
def gpu():
    """numba.cuda with a device (or the simulator)."""
    if not cuda.is_available():
        pytest.skip("no CUDA device and the simulator is off")
    return cuda


@pytest.fixture
def torch():
    if TORCH is None:
        pytest.skip("torch is not installed (pip install torch==2.13.0 for parity tests)")
    return TORCH
