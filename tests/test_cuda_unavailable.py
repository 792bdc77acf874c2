"""GPU requests without a GPU or without numba-cuda fail clearly; the CPU path never needs them."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numbaconv
from numbaconv import devices


def run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_import_and_cpu_calls_never_import_numba_cuda():
    result = run_python("""
        import sys, numpy as np, numbaconv
        numbaconv.conv2d(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32))
        numbaconv.plan(np.ones((1, 16, 8, 8), np.float32), np.ones((16, 16, 3, 3), np.float32),
                       device="cuda")
        print("numba.cuda" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_missing_numba_cuda_says_what_to_install():
    result = run_python("""
        import sys
        sys.modules["numba.cuda"] = None  # as if numba-cuda were not installed
        import numpy as np, numbaconv
        try:
            numbaconv.conv2d(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32),
                             device="cuda")
        except numbaconv.CudaUnavailable as error:
            print(error)
    """)
    assert result.returncode == 0, result.stderr
    assert "numba-cuda" in result.stdout and "pip install 'numbaconv[cuda]'" in result.stdout


def test_no_gpu_says_so():
    # numba-cuda, not Numba's deprecated built-in numba.cuda (which imports without it
    # and is rejected with another message: see test_missing_numba_cuda_says_what_to_install).
    pytest.importorskip("numba_cuda", reason="needs numba-cuda: pip install -e '.[cuda]'")
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU (or the simulator) is available here")
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(numbaconv.CudaUnavailable, match="no usable CUDA GPU"):
        numbaconv.conv2d(x, w, device="cuda")


class FakeDeviceArray:
    """Just enough of a CuPy/torch CUDA array for placement: the interface, no data."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0, False),
                                         "version": 3}


def test_placement_rules():
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    assert devices.placement("conv2d", None, {"input": x, "weight": w, "bias": None}) == "cpu"
    assert devices.placement("conv2d", "cuda", {"input": x, "weight": w}) == "cuda"
    fx, fw = FakeDeviceArray((1, 1, 4, 4)), FakeDeviceArray((1, 1, 3, 3))
    assert devices.placement("conv2d", None, {"input": fx, "weight": fw, "bias": None}) == "cuda"
    with pytest.raises(ValueError, match="input is on the GPU and weight is on the host"):
        numbaconv.conv2d(fx, w)
    with pytest.raises(ValueError, match="device must be one of"):
        numbaconv.conv2d(x, w, device="gpu")


def test_plan_reads_device_array_shapes_without_a_gpu():
    plan = numbaconv.plan(FakeDeviceArray((2, 32, 9, 9)), FakeDeviceArray((32, 32, 3, 3)),
                          padding=1)
    assert (plan.device, plan.algorithm, plan.output_shape) == ("cuda", "winograd_f4x4",
                                                                (2, 32, 9, 9))
    with pytest.raises(TypeError, match="float32 or float64"):
        numbaconv.plan(FakeDeviceArray((2, 32, 9, 9), "<i4"), FakeDeviceArray((32, 32, 3, 3)))


def test_stream_on_a_cpu_call_is_an_error():
    x, w = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="stream= applies to GPU calls only"):
        numbaconv.conv2d(x, w, stream=object())


def test_gpu_only_names_on_cpu_and_cpu_only_names_on_gpu():
    x, w = np.ones((1, 16, 8, 8), np.float32), np.ones((16, 16, 3, 3), np.float32)
    with pytest.raises(numbaconv.UnsupportedAlgorithm, match="no GPU kernel"):
        numbaconv.plan(x, w, device="cuda", algorithm="gemm")
    assert numbaconv.plan(x, w, device="cuda", algorithm="autotune").algorithm == "winograd_f4x4"


def test_gpu_check_without_a_gpu_says_so(capsys):
    """``python -m numbaconv gpucheck`` on a machine without a usable GPU (CI) exits 2 and
    says why, before running anything."""
    try:
        from numba import cuda
        if cuda.is_available():
            pytest.skip("a GPU (or the simulator) is available here")
    except ImportError:
        pass
    from numbaconv.__main__ import main

    assert main(["gpucheck"]) == 2
    assert "no GPU to check" in capsys.readouterr().out
