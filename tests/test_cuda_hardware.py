"""Real-GPU checks at realistic sizes (too big for the simulator); skipped without a GPU.

The simulator suite (``tests_cuda``) covers every kernel and edge on tiny shapes; these
run the public API on a real device, against the CPU algorithms and torch's CUDA
convolution when that is installed.
"""

import numpy as np
import pytest

import numbaconv

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu():
    try:
        from numba import cuda
    except ImportError:
        pytest.skip("numba-cuda is not installed")
    if cuda.config.ENABLE_CUDASIM or not cuda.is_available():
        pytest.skip("no real CUDA GPU here")
    return cuda


LAYERS = [  # (input, weight, kwargs)
    ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ((2, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ((4, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ((8, 96, 28, 28), (96, 1, 3, 3), dict(padding=1, groups=96)),
    ((2, 32, 33, 31), (48, 32, 3, 3), dict(padding=2, dilation=2)),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", LAYERS)
@pytest.mark.parametrize("algorithm", ["auto", "direct", "winograd_f2x2", "winograd_f4x4"])
def test_real_gpu_matches_cpu(gpu, x_shape, w_shape, kwargs, algorithm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32) / np.sqrt(np.prod(w_shape[1:]))
    b = rng.standard_normal(w_shape[0], dtype=np.float32)
    try:
        plan = numbaconv.plan(x, w, b, **kwargs, algorithm=algorithm, device="cuda")
    except numbaconv.UnsupportedAlgorithm:
        pytest.skip(f"{algorithm} does not run this layer")
    out = numbaconv.conv2d(gpu.to_device(x), gpu.to_device(w), gpu.to_device(b), **kwargs,
                           algorithm=algorithm).copy_to_host()
    expected = numbaconv.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                                **kwargs, algorithm="gemm")
    error = np.abs(out - expected).max() / np.abs(expected).max()
    assert error < (2e-4 if plan.algorithm.startswith("winograd") else 2e-5)


def test_torch_cuda_tensors_in_and_out(gpu):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    x = torch.randn(2, 16, 20, 20, device="cuda")
    w = torch.randn(32, 16, 3, 3, device="cuda")
    out = numbaconv.conv2d(x, w, padding=1)
    result = torch.as_tensor(out, device="cuda")  # no copy
    expected = torch.nn.functional.conv2d(x, w, padding=1)
    assert torch.allclose(result, expected, rtol=1e-4, atol=1e-3)
