import os
import sys

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


def _import_torchvision():
    """torchvision beside the CPU torch: its wheel's compiled operators are linked against
    the CUDA build and do not load here ("operator torchvision::nms does not exist"). The
    models need none of them: declaring the two operators' schemas before the import (a
    fragment of the torchvision operator library, no kernels) lets the Python package
    import. Test-time only; numbaconv never imports torchvision."""
    if TORCH is None:
        return None
    try:
        import torchvision
        return torchvision
    except ImportError:
        return None
    except RuntimeError:
        pass  # the operators' schemas are missing: declare them, then import again
    library = TORCH.library.Library("torchvision", "FRAGMENT")
    for name in ("nms", "qnms"):
        try:
            library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already declared (a partial import got that far)
            pass
    _SCHEMAS.append(library)  # kept alive: the schemas go with the library object
    for module in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[module]
    import torchvision
    return torchvision


_SCHEMAS: list = []


@pytest.fixture(scope="session")
def torchvision():
    module = _import_torchvision()  # on first use: the import takes a second or two
    if module is None:
        if REQUIRE_TORCH:
            raise RuntimeError("CI needs torchvision for the whole-model tests "
                               "(pip install torchvision==0.28.0 beside torch==2.13.0)")
        pytest.skip("torchvision is not installed (pip install torchvision==0.28.0)")
    return module
