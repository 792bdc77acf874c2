"""What the README promises of the extras holds in pyproject.toml."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
EXTRAS = PROJECT["project"]["optional-dependencies"]


def _names(requirements):
    return {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip() for r in requirements}


def test_notebooks_extra_runs_the_gpu_notebook_in_the_simulator():
    # 03_gpu.ipynb needs numba-cuda for Numba's CUDA simulator (no toolkit, no GPU).
    assert "numba-cuda" in _names(EXTRAS["notebooks"])
    source = (Path(__file__).parents[1] / "notebooks" / "03_gpu.ipynb").read_text()
    assert "NUMBA_ENABLE_CUDASIM" in source


def test_torch_is_never_a_dependency():
    everything = PROJECT["project"]["dependencies"] + sum(EXTRAS.values(), [])
    assert not {"torch", "torchvision", "onnxruntime"} & _names(everything)
