import os

import numpy as np
import pytest

# In CI torch parity is mandatory: a missing torch must fail the run, not skip it.
REQUIRE_TORCH = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _import_torch():
    try:
        import torch
    except ImportError:
        if REQUIRE_TORCH:
            raise
        return None
    torch.set_num_threads(1)
    return torch


TORCH = _import_torch()


@pytest.fixture
def torch():
    if TORCH is None:
        pytest.skip("torch is not installed (pip install torch==2.13.0 for parity tests)")
    return TORCH


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
