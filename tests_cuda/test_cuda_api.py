"""The GPU through the public API: device arrays in and out, placement errors, streams, plans."""

import numpy as np
import pytest

import numbaconv
from helpers import reference_conv


def is_device(array):
    return hasattr(array, "copy_to_host") and not isinstance(array, np.ndarray)


@pytest.fixture
def layer(rng):
    x = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    expected = reference_conv("conv2d", x, w, b, 1, 1, 1, 1, "zeros")
    return x, w, b, expected


def test_device_arrays_in_device_array_out(gpu, layer):
    x, w, b, expected = layer
    out = numbaconv.conv2d(gpu.to_device(x), gpu.to_device(w), gpu.to_device(b), padding=1)
    assert is_device(out) and out.shape == expected.shape
    np.testing.assert_allclose(out.copy_to_host(), expected, rtol=1e-5, atol=1e-5)


def test_device_inputs_are_not_modified(gpu, layer):
    x, w, b, _ = layer
    dx, dw = gpu.to_device(x), gpu.to_device(w)
    numbaconv.conv2d(dx, dw, padding=1, padding_mode="reflect")
    np.testing.assert_array_equal(dx.copy_to_host(), x)
    np.testing.assert_array_equal(dw.copy_to_host(), w)


def test_non_contiguous_and_mixed_dtype_device_arrays(gpu, layer):
    """A Fortran-ordered input (copied by the gather kernel) and float64 weights (cast)."""
    x, w, b, _ = layer
    x_f = np.asfortranarray(x)
    out = numbaconv.conv2d(gpu.to_device(x_f), gpu.to_device(w.astype(np.float64)),
                           gpu.to_device(b), padding=1)
    expected = reference_conv("conv2d", x, w.astype(np.float64), b, 1, 1, 1, 1, "zeros")
    host = out.copy_to_host()
    assert host.dtype == np.float64
    np.testing.assert_allclose(host, expected, rtol=1e-12, atol=1e-12)


def test_stream(gpu, layer):
    x, w, b, expected = layer
    stream = gpu.stream()
    out = numbaconv.conv2d(gpu.to_device(x, stream=stream), gpu.to_device(w, stream=stream),
                           gpu.to_device(b, stream=stream), padding=1, stream=stream)
    host = out.copy_to_host(stream=stream)
    stream.synchronize()
    np.testing.assert_allclose(host, expected, rtol=1e-5, atol=1e-5)


def test_unbatched_conv1d_on_device(gpu, rng):
    x = rng.standard_normal((2, 9)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3)).astype(np.float32)
    out = numbaconv.conv1d(gpu.to_device(x), gpu.to_device(w), stride=2)
    expected = reference_conv("conv1d", x, w, None, 2, 0, 1, 1, "zeros")
    assert out.shape == expected.shape == (4, 4)
    np.testing.assert_allclose(out.copy_to_host(), expected, rtol=1e-5, atol=1e-5)


def test_empty_batch_on_device(gpu):
    x = np.zeros((0, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    out = numbaconv.conv2d(gpu.to_device(x), gpu.to_device(w))
    assert is_device(out) and out.shape == (0, 3, 3, 3)
    assert numbaconv.conv2d(x, w, device="cuda").shape == (0, 3, 3, 3)


def test_mixed_host_and_device_arrays_raise(gpu, layer):
    x, w, b, _ = layer
    with pytest.raises(ValueError, match="same device.*weight is on the host"):
        numbaconv.conv2d(gpu.to_device(x), w)
    with pytest.raises(ValueError, match="bias is on the GPU"):
        numbaconv.conv2d(x, w, gpu.to_device(b))
    with pytest.raises(ValueError, match="device='cpu'"):
        numbaconv.conv2d(gpu.to_device(x), gpu.to_device(w), device="cpu")


def test_device_arrays_are_validated_like_host_arrays(gpu, layer):
    x, w, _, _ = layer
    with pytest.raises(ValueError, match="expected input of shape"):
        numbaconv.conv2d(gpu.to_device(x), gpu.to_device(np.ascontiguousarray(w[:, :1])))
    with pytest.raises(TypeError, match="float32 or float64"):
        numbaconv.conv2d(gpu.to_device(x.astype(np.int32)), gpu.to_device(w))


def test_plan_on_device(gpu, rng):
    x = gpu.to_device(np.zeros((1, 16, 8, 8), np.float32))
    w = gpu.to_device(np.zeros((16, 16, 3, 3), np.float32))
    plan = numbaconv.plan(x, w, padding=1)
    assert (plan.device, plan.algorithm) == ("cuda", "winograd_f4x4")
    assert "on cuda" in repr(plan)
    assert numbaconv.plan(x, w, stride=2).algorithm == "direct"


def test_gpu_algorithms_refuse_what_they_cannot_run(gpu, layer):
    x, w, _, _ = layer
    with pytest.raises(numbaconv.UnsupportedAlgorithm, match="no GPU kernel"):
        numbaconv.conv2d(x, w, device="cuda", algorithm="gemm")
    with pytest.raises(numbaconv.UnsupportedAlgorithm, match="stride 1"):
        numbaconv.conv2d(x, w, stride=2, device="cuda", algorithm="winograd_f4x4")
    with pytest.raises(numbaconv.UnsupportedAlgorithm, match="dilation 1"):
        numbaconv.conv2d(x, w, dilation=2, padding=2, device="cuda", algorithm="winograd_f2x2")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the simulator's NumPy
def test_nonfinite_matches_torch_pattern_under_auto(gpu, rng):
    """Winograd spreads an inf over its whole tile; auto reruns such a layer with direct."""
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    x[0, 3, 2, 2] = np.inf
    assert numbaconv.plan(x, w, padding=1, device="cuda").algorithm == "winograd_f4x4"
    out = numbaconv.conv2d(x, w, padding=1, device="cuda")
    expected = numbaconv.conv2d(x, w, padding=1, device="cuda", algorithm="direct")
    np.testing.assert_array_equal(np.isfinite(out), np.isfinite(expected))
    assert not np.isfinite(out).all()


def test_bench_row_on_the_gpu(gpu):
    """The bench's GPU path on a layer small enough for the simulator."""
    from numbaconv.bench import bench_layer

    layer = dict(N=1, C=2, H=6, W=6, K=3, R=3, S=3, stride=1, padding=1, dilation=1, groups=1)
    row = bench_layer(layer, repeat=1, device="cuda")
    assert row["algorithm"] == "direct" and row["error"] < 1e-5 and row["ms"] > 0
    assert row["torch_ms"] is None and row["numpy_ms"] is None
