"""The examples in docstrings are part of the documentation: they must run and be true."""

import doctest
import importlib
import os
import pkgutil

import pytest

import numbaconv

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(numbaconv.__path__, "numbaconv.")
    if ".cuda" not in info.name and info.name != "numbaconv.__main__"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "numbaconv.dask_arrays" and os.environ.get("CI", "").lower() not in (
            "1", "true", "yes"):
        pytest.importorskip("dask.array")  # (numbaconv[dask]; CI installs it)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
