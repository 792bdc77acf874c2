"""The GPU layers beyond convolutions (``numbaconv.gpu_arrays``), on tiny shapes: each
against an independent NumPy reference and torch, device arrays in and out, inputs
untouched, arguments checked as on the CPU."""

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv
import reference
from numbaconv import gpu_arrays


def on_gpu(gpu, *arrays):
    return [None if a is None else gpu.to_device(a) for a in arrays]


def host(out):
    assert not isinstance(out, np.ndarray), "a GPU call must return a device array"
    return out.copy_to_host()


def special_values(rng, shape, dtype=np.float32):
    """Normal values with NaN, +-inf and exact ties sprinkled in."""
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=min(4, flat.size), replace=False)
    flat[picks[:1]] = np.nan
    flat[picks[1:2]] = np.inf
    flat[picks[2:3]] = -np.inf
    flat[picks[3:]] = 1.0
    return x


# --------------------------------------------------------------------------- activations

def _erfc(values):
    return np.vectorize(math.erfc)(values)


NUMPY_ACTIVATIONS = {  # name -> (call kwargs, NumPy formula in float64)
    "relu": ({}, lambda x: np.where(x < 0, 0, x)),
    "relu6": ({}, lambda x: np.where(x < 0, 0, np.where(x > 6, 6, x))),
    "hardtanh": (dict(min_val=-0.5, max_val=2.0),
                 lambda x: np.where(x < -0.5, -0.5, np.where(x > 2, 2, x))),
    "leaky_relu": (dict(negative_slope=0.2), lambda x: np.where(x < 0, 0.2 * x, x)),
    "sigmoid": ({}, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": ({}, np.tanh),
    "silu": ({}, lambda x: x / (1 + np.exp(-x))),
    "hardsigmoid": ({}, lambda x: np.clip(x / 6 + 0.5, 0, 1)),
    "hardswish": ({}, lambda x: x * np.clip(x + 3, 0, 6) / 6),
    "gelu": ({}, lambda x: x * _erfc(-x / np.sqrt(2)) / 2),
}


@pytest.mark.parametrize("name", sorted(NUMPY_ACTIVATIONS))
def test_activations(gpu, rng, torch, name):
    kwargs, formula = NUMPY_ACTIVATIONS[name]
    x = rng.uniform(-8, 8, (2, 3, 5)).astype(np.float32)
    x[0, 0, :4] = [3.0, -3.0, 0.0, 6.0]  # the kinks
    before = x.copy()
    dx = gpu.to_device(x)
    out = host(getattr(numbaconv, name)(dx, **kwargs))
    np.testing.assert_array_equal(dx.copy_to_host(), before)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(out, formula(x.astype(np.float64)), rtol=2e-6, atol=2e-6)
    expected = getattr(torch.nn.functional, name)(torch.from_numpy(x), **kwargs).numpy()
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=2e-6)


def test_activation_special_values_and_float64(gpu, rng, torch):
    x = special_values(rng, (3, 7), np.float64)
    for name in ("relu", "relu6", "sigmoid", "hardswish", "leaky_relu", "tanh"):
        out = host(getattr(numbaconv, name)(gpu.to_device(x)))
        assert out.dtype == np.float64
        expected = getattr(torch.nn.functional, name)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
    out = host(numbaconv.gelu(gpu.to_device(x), approximate="tanh"))
    expected = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_activation_inplace_and_errors(gpu, rng):
    x = rng.standard_normal(10).astype(np.float32)
    dx = gpu.to_device(x)
    assert numbaconv.relu6(dx, inplace=True) is dx
    np.testing.assert_array_equal(dx.copy_to_host(), np.clip(x, 0, 6))
    with pytest.raises(ValueError, match="C-contiguous"):
        numbaconv.relu6(dx[::2], inplace=True)  # a strided view: no silent copy
    with pytest.raises(ValueError, match="min_val cannot be greater"):
        numbaconv.hardtanh(dx, 2.0, 1.0)
    with pytest.raises(ValueError, match="approximate"):
        numbaconv.gelu(dx, approximate="fast")
    with pytest.raises(TypeError, match="float32 or float64"):
        numbaconv.relu(gpu.to_device(np.arange(4)))


# --------------------------------------------------------------------------- softmax

@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("log", [False, True])
def test_softmax(gpu, rng, torch, dim, log):
    x = special_values(rng, (3, 4, 5)) * 10
    x[1] = rng.standard_normal((4, 5)) * 10  # a slice without specials
    op = numbaconv.log_softmax if log else numbaconv.softmax
    out = host(op(gpu.to_device(x), dim=dim))
    torch_op = torch.log_softmax if log else torch.softmax
    expected = torch_op(torch.from_numpy(x), dim=dim).numpy()
    np.testing.assert_allclose(out, expected, rtol=2e-5, atol=2e-6, equal_nan=True)
    finite = x[1].astype(np.float64)
    axis = dim if dim < 1 else dim - 1
    if dim != 0:
        shifted = finite - finite.max(axis=axis, keepdims=True)
        logs = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        np.testing.assert_allclose(out[1], logs if log else np.exp(logs), rtol=2e-5, atol=2e-6)
    with pytest.raises(IndexError, match="Dimension out of range"):
        op(gpu.to_device(x), dim=3)


# --------------------------------------------------------------------------- linear

@pytest.mark.parametrize("shape, features, bias", [((5, 7), 3, True), ((2, 3, 70), 66, False),
                                                    ((17,), 4, True)])
def test_linear(gpu, rng, torch, shape, features, bias):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((features, shape[-1])).astype(np.float32)
    b = rng.standard_normal(features).astype(np.float32) if bias else None
    out = host(numbaconv.linear(*on_gpu(gpu, x, w, b)))
    expected = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    expected = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(w),
                                          None if b is None else torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def test_linear_errors(gpu, rng):
    x, w = gpu.to_device(np.ones((2, 3), np.float32)), gpu.to_device(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match="in_features"):
        numbaconv.linear(x, w)
    with pytest.raises(ValueError, match="same device"):
        numbaconv.linear(x, np.ones((4, 3), np.float32))


# --------------------------------------------------------------------------- pooling

POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=2, stride=1, dilation=2),
]


def _pairs(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d(gpu, rng, torch, case):
    x = special_values(rng, (2, 3, 7, 6))
    args = dict(stride=None, padding=0, dilation=1, ceil_mode=False)
    args.update(case)
    out, indices = numbaconv.max_pool2d(gpu.to_device(x), return_indices=True, **case)
    out, indices = host(out), host(indices)
    kernel = _pairs(args["kernel_size"])
    values, where = reference.max_pool2d(x, kernel, _pairs(args["stride"] or kernel),
                                         _pairs(args["padding"]), _pairs(args["dilation"]),
                                         args["ceil_mode"])
    np.testing.assert_array_equal(out, values)
    np.testing.assert_array_equal(indices, where)
    expected, expected_indices = torch.nn.functional.max_pool2d(
        torch.from_numpy(x), return_indices=True, **case)
    np.testing.assert_array_equal(out, expected.numpy())
    np.testing.assert_array_equal(host(numbaconv.max_pool2d(gpu.to_device(x), **case)), out)


@pytest.mark.parametrize("case", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1,
                                                            count_include_pad=False),
                                  dict(kernel_size=(3, 2), padding=1, ceil_mode=True, stride=2),
                                  dict(kernel_size=2, divisor_override=3)])
def test_avg_pool2d(gpu, rng, torch, case):
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    out = host(numbaconv.avg_pool2d(gpu.to_device(x), **case))
    args = dict(stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None)
    args.update(case)
    kernel = _pairs(args["kernel_size"])
    expected = reference.avg_pool2d(x, kernel, _pairs(args["stride"] or kernel),
                                    _pairs(args["padding"]), args["ceil_mode"],
                                    args["count_include_pad"], args["divisor_override"])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, torch.nn.functional.avg_pool2d(torch.from_numpy(x), **case),
                               rtol=1e-5, atol=1e-6)


def test_pool1d_and_unbatched(gpu, rng, torch):
    x = special_values(rng, (2, 3, 11))
    out = host(numbaconv.max_pool1d(gpu.to_device(x), 3, 2, 1))
    np.testing.assert_array_equal(out, torch.nn.functional.max_pool1d(torch.from_numpy(x), 3, 2, 1))
    x = rng.standard_normal((3, 11)).astype(np.float32)
    out = host(numbaconv.avg_pool1d(gpu.to_device(x), 2))
    np.testing.assert_allclose(out, torch.nn.functional.avg_pool1d(torch.from_numpy(x), 2),
                               rtol=1e-6)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    assert numbaconv.max_pool2d(gpu.to_device(x), 2).shape == (3, 2, 2)


def test_max_unpool2d(gpu, rng, torch):
    x = rng.standard_normal((2, 3, 6, 4)).astype(np.float32)
    pooled, indices = numbaconv.max_pool2d(gpu.to_device(x), 2, return_indices=True)
    out = host(numbaconv.max_unpool2d(pooled, indices, 2))
    expected = np.zeros_like(x).reshape(2, 3, 24)
    np.put_along_axis(expected, host(indices).reshape(2, 3, 6), host(pooled).reshape(2, 3, 6), 2)
    np.testing.assert_array_equal(out, expected.reshape(x.shape))
    t_pooled, t_indices = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2,
                                                         return_indices=True)
    np.testing.assert_array_equal(out, torch.nn.functional.max_unpool2d(t_pooled, t_indices, 2))
    bad = gpu.to_device(np.full((2, 3, 3, 2), 99, np.int64))
    with pytest.raises(ValueError, match="invalid max indices"):
        numbaconv.max_unpool2d(pooled, bad, 2)


@pytest.mark.parametrize("size", [1, (3, 2), (4, None)])
def test_adaptive_pools(gpu, rng, torch, size):
    x = special_values(rng, (2, 3, 7, 5))
    dx = gpu.to_device(x)
    tx = torch.from_numpy(x)
    out = host(numbaconv.adaptive_avg_pool2d(dx, size))
    np.testing.assert_allclose(out, torch.nn.functional.adaptive_avg_pool2d(tx, size),
                               rtol=1e-5, equal_nan=True)
    out, indices = numbaconv.adaptive_max_pool2d(dx, size, return_indices=True)
    expected, expected_indices = torch.nn.functional.adaptive_max_pool2d(tx, size, True)
    np.testing.assert_array_equal(host(out), expected.numpy())
    np.testing.assert_array_equal(host(indices), expected_indices.numpy())
    x1 = rng.standard_normal((3, 10)).astype(np.float32)
    out = host(numbaconv.adaptive_avg_pool1d(gpu.to_device(x1), 4))
    windows = [x1[:, (i * 10) // 4:-(-((i + 1) * 10) // 4)].mean(axis=1) for i in range(4)]
    np.testing.assert_allclose(out, np.stack(windows, axis=1), rtol=1e-6)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_pooling_random(gpu, data):
    """Random valid windows on tiny shapes agree with the NumPy references."""
    draw = data.draw
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ceil_mode = draw(st.booleans())
    h = draw(st.integers(dilation[0] * (kernel[0] - 1) + 1, 7))
    w = draw(st.integers(dilation[1] * (kernel[1] - 1) + 1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = special_values(rng, (1, 2, h, w))
    out, indices = numbaconv.max_pool2d(gpu.to_device(x), kernel, stride, padding, dilation,
                                        ceil_mode, return_indices=True)
    values, where = reference.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    np.testing.assert_array_equal(host(out), values)
    np.testing.assert_array_equal(host(indices), where)
    x = rng.standard_normal((1, 2, h, w))
    include = draw(st.booleans())
    out = numbaconv.avg_pool2d(gpu.to_device(x), kernel, stride, padding, ceil_mode, include)
    np.testing.assert_allclose(host(out), reference.avg_pool2d(x, kernel, stride, padding,
                                                               ceil_mode, include), rtol=1e-12)


def test_pooling_errors_as_on_the_cpu(gpu):
    dx = gpu.to_device(np.ones((1, 1, 4, 4), np.float32))
    for call in (lambda a: numbaconv.max_pool2d(a, 2, padding=2),
                 lambda a: numbaconv.avg_pool2d(a, 0),
                 lambda a: numbaconv.adaptive_avg_pool2d(a, -1)):
        with pytest.raises(ValueError) as on_cpu:
            call(np.ones((1, 1, 4, 4), np.float32))
        with pytest.raises(ValueError) as on_gpu_error:
            call(dx)
        assert str(on_gpu_error.value) == str(on_cpu.value)


# --------------------------------------------------------------------------- batch norm

def test_batch_norm_eval(gpu, rng, torch):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    mean, var = rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    w, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    out = host(numbaconv.batch_norm(*on_gpu(gpu, x, mean, var, w, b), eps=1e-3))
    c = (None, slice(None), None, None)
    expected = (x - mean[c]) / np.sqrt(var[c] + 1e-3) * w[c] + b[c]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    torch_out = torch.nn.functional.batch_norm(*map(torch.from_numpy, (x, mean, var, w, b)),
                                               eps=1e-3)
    np.testing.assert_allclose(out, torch_out, rtol=1e-5, atol=1e-5)
    x3 = np.ascontiguousarray(x[:, :, 0])
    out = host(numbaconv.batch_norm(*on_gpu(gpu, x3, mean, var)))  # (N, C, L), no affine
    np.testing.assert_allclose(out, (x3 - mean[:, None]) / np.sqrt(var[:, None] + 1e-5),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="running_mean must be given"):
        numbaconv.batch_norm(gpu.to_device(x), None, gpu.to_device(var))


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training_updates_running_stats(gpu, rng, torch, affine):
    x = (rng.standard_normal((3, 2, 5, 7)) * 3 + 1).astype(np.float32)
    mean, var = np.zeros(2, np.float32), np.ones(2, np.float32)
    w = rng.standard_normal(2).astype(np.float32) if affine else None
    b = rng.standard_normal(2).astype(np.float32) if affine else None
    d_mean, d_var = gpu.to_device(mean), gpu.to_device(var)
    out = host(numbaconv.batch_norm(gpu.to_device(x), d_mean, d_var, *on_gpu(gpu, w, b),
                                    training=True, momentum=0.3))
    t_mean, t_var = torch.zeros(2), torch.ones(2)
    expected = torch.nn.functional.batch_norm(
        torch.from_numpy(x), t_mean, t_var, None if w is None else torch.from_numpy(w),
        None if b is None else torch.from_numpy(b), training=True, momentum=0.3)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d_mean.copy_to_host(), t_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d_var.copy_to_host(), t_var, rtol=1e-5)
    moments = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_allclose(d_mean.copy_to_host(), 0.3 * moments.mean(axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        numbaconv.batch_norm(gpu.to_device(x[:1, :, :1, :1].copy()), d_mean, d_var,
                             training=True)


# --------------------------------------------------------------------------- transposed

TRANSPOSED_CASES = [
    dict(x_shape=(1, 2, 4, 3), w_shape=(2, 3, 3, 3)),
    dict(x_shape=(2, 4, 3, 4), w_shape=(4, 1, 3, 2), stride=2, padding=1, output_padding=1,
         groups=2),
    dict(x_shape=(1, 2, 3, 3), w_shape=(2, 2, 2, 3), stride=(2, 3), dilation=(2, 1), bias=False),
]


@pytest.mark.parametrize("case", TRANSPOSED_CASES)
def test_conv_transpose2d(gpu, rng, torch, case):
    case = dict(case)
    x = rng.standard_normal(case.pop("x_shape")).astype(np.float32)
    w = rng.standard_normal(case.pop("w_shape")).astype(np.float32)
    b = rng.standard_normal(w.shape[1] * case.get("groups", 1)).astype(np.float32) \
        if case.pop("bias", True) else None
    out = host(numbaconv.conv_transpose2d(*on_gpu(gpu, x, w, b), **case))
    args = dict(stride=1, padding=0, output_padding=0, dilation=1, groups=1)
    args.update(case)
    expected = reference.conv_transpose2d(x, w, b, _pairs(args["stride"]), _pairs(args["padding"]),
                                          _pairs(args["output_padding"]), _pairs(args["dilation"]),
                                          args["groups"])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    torch_out = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b),
        **case)
    np.testing.assert_allclose(out, torch_out, rtol=1e-5, atol=1e-5)


def test_conv_transpose1d_and_errors(gpu, rng, torch):
    x = rng.standard_normal((2, 3, 5)).astype(np.float64)
    w = rng.standard_normal((3, 2, 3)).astype(np.float64)
    out = host(numbaconv.conv_transpose1d(*on_gpu(gpu, x, w), stride=2, padding=1))
    expected = torch.nn.functional.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(w),
                                                    stride=2, padding=1)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="output_padding must be smaller"):
        numbaconv.conv_transpose1d(*on_gpu(gpu, x, w), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="algorithm must be 'auto'"):
        numbaconv.conv_transpose1d(*on_gpu(gpu, x, w), algorithm="direct")


# --------------------------------------------------------------------------- the rest

def test_add(gpu, rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    np.testing.assert_allclose(host(gpu_arrays.add(*on_gpu(gpu, a, b))), a + b)
    with pytest.raises(ValueError, match="same shape"):
        gpu_arrays.add(*on_gpu(gpu, a, b[:1]))


def test_memory_guard(gpu, monkeypatch):
    from numbaconv.cuda import memory

    monkeypatch.setattr(memory, "free_and_total", lambda: (1000, 4000))
    with pytest.raises(MemoryError, match=r"max_pool2d needs .* MiB of GPU memory"):
        numbaconv.max_pool2d(gpu.to_device(np.ones((1, 1, 40, 40), np.float32)), 1)
    with pytest.raises(MemoryError, match="conv2d"):
        numbaconv.conv2d(gpu.to_device(np.ones((1, 1, 40, 40), np.float32)),
                         gpu.to_device(np.ones((1, 1, 1, 1), np.float32)))
    assert numbaconv.relu(gpu.to_device(np.ones(10, np.float32))).shape == (10,)  # 40 bytes fit


# --------------------------------------------------------------------------- models

def _small_cnn(nn):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
        nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1), nn.Hardswish(),
        nn.ConvTranspose2d(5, 4, 2, stride=2), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(4, 3), nn.LogSoftmax(dim=1))


@pytest.mark.parametrize("training", [False, True])
def test_model_to_cuda_runs_on_the_gpu(gpu, rng, torch, training):
    """Module.to("cuda") moves parameters and floating buffers; the forward pass then
    keeps every activation on the GPU and matches the same model on the CPU and torch."""
    from numbaconv import nn

    torch.manual_seed(0)
    reference = _small_cnn(torch.nn).train(training)
    with torch.no_grad():
        reference[1].running_mean.uniform_(-1, 1)
        reference[1].running_var.uniform_(0.5, 2)
    state = {k: v.numpy().copy() for k, v in reference.state_dict().items()}
    model = _small_cnn(nn)
    model.load_state_dict(state)
    model.train(training)
    for m in (model, reference):
        m[10].p = 0.0 if training else 0.2  # (dropout in training mode: CPU only)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert model.to("cuda") is model
    assert not isinstance(model[0].weight, np.ndarray)
    assert isinstance(model[1].num_batches_tracked, np.ndarray)  # (a host counter)
    seen = []
    for layer in model:
        layer.register_forward_hook(lambda module, args, out: seen.append(out)) \
            if hasattr(layer, "register_forward_hook") else None
    out = model(gpu.to_device(x))
    assert not isinstance(out, np.ndarray)
    assert all(not isinstance(a, np.ndarray) for a in seen)
    expected = reference(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out.copy_to_host(), expected, rtol=1e-4, atol=1e-5)
    model.cpu()
    assert isinstance(model[1].running_mean, np.ndarray)
    np.testing.assert_allclose(model[1].running_mean, reference[1].running_mean.numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model[1].running_var, reference[1].running_var.numpy(),
                               rtol=1e-5)
    assert int(model[1].num_batches_tracked) == int(reference[1].num_batches_tracked)
    np.testing.assert_allclose(model(x), expected, rtol=1e-4, atol=1e-5) if not training \
        else None


def test_model_to_checks_its_arguments(gpu):
    from numbaconv import nn

    model = nn.Linear(2, 3)
    with pytest.raises(ValueError, match="device must be"):
        model.to("cuda:1")
    model.to("cuda", np.float64)
    assert model.weight.dtype == np.float64 and not isinstance(model.weight, np.ndarray)
    assert model.to(np.float32).weight.dtype == np.float32
    out = model(gpu.to_device(np.ones((4, 2), np.float32)))
    assert out.shape == (4, 3)
    with pytest.raises(ValueError, match="same device"):
        model(np.ones((4, 2), np.float32))


def test_residual_blocks_add_on_the_gpu(gpu, rng, torch):
    """torch's ResNet BasicBlock, written the same way (``out + identity``), runs on the
    GPU: results add as device arrays (``+`` and ``+=``)."""
    from numbaconv import nn

    def block(lib, in_place):
        class Block(lib.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = lib.Conv2d(3, 3, 3, padding=1, bias=False)
                self.bn1 = lib.BatchNorm2d(3)
                self.relu = lib.ReLU(inplace=True)
                self.conv2 = lib.Conv2d(3, 3, 3, padding=1)

            def forward(self, x):
                out = self.conv2(self.relu(self.bn1(self.conv1(x))))
                if in_place:
                    out += x
                    return self.relu(out)
                return self.relu(out + x)
        return Block().eval()

    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    for in_place in (False, True):
        torch.manual_seed(1)
        reference = block(torch.nn, in_place)
        model = block(nn, in_place)
        model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})
        out = model.to("cuda")(gpu.to_device(x))
        assert not isinstance(out, np.ndarray)
        np.testing.assert_allclose(out.copy_to_host(), reference(torch.from_numpy(x)).detach(),
                                   rtol=1e-5, atol=1e-5)
    a = numbaconv.relu(gpu.to_device(x))
    assert not isinstance(a + a, np.ndarray)
    np.testing.assert_array_equal((a + a).reshape(2, 75).copy_to_host(),
                                  2 * np.maximum(x, 0).reshape(2, 75))
    for host_operand in (lambda: a + np.ones_like(x), lambda: np.ones_like(x) + a):
        with pytest.raises(TypeError, match="adds only another GPU array"):
            host_operand()  # a host array: no silent copy


def test_layer_bench_on_the_gpu(gpu, monkeypatch):
    """``python -m numbaconv layers --device cuda`` (the hardware check's second table)
    runs every layer on device arrays; tiny shapes here (without CUDA, torch sits out)."""
    from numbaconv import bench

    monkeypatch.setattr(bench, "LAYER_CASES", {
        "max_pool2d": ("max_pool2d", [(1, 2, 6, 6)], dict(kernel_size=3, stride=2, padding=1)),
        "conv_transpose2d": ("conv_transpose2d", [(1, 2, 3, 3), (2, 2, 2, 2)], dict(stride=2)),
        "linear": ("linear", [(3, 5), (4, 5)], {}), "relu": ("relu", [(2, 7)], {})})
    table = io.StringIO()
    bench.run_layer_bench(repeat=1, device="cuda", out=table)
    printed = table.getvalue()
    assert "float32, GPU" in printed
    for name in ("max_pool2d", "conv_transpose2d", "linear", "relu"):
        assert f"\n{name} " in printed


# --------------------------------------------------------------------------- gradients

GRAD_CASES = [
    dict(x_shape=(2, 4, 6, 5), w_shape=(4, 2, 3, 2), stride=2, padding=1, groups=2),
    dict(x_shape=(1, 2, 7, 7), w_shape=(2, 2, 2, 3), dilation=(2, 1), padding=(1, 0)),
    dict(x_shape=(1, 2, 5, 6), w_shape=(2, 2, 2, 2), padding="same"),  # asymmetric
    dict(x_shape=(2, 3, 9), w_shape=(2, 3, 3), stride=2, op="conv1d"),
]


@pytest.mark.parametrize("case", GRAD_CASES)
def test_conv_gradients(gpu, rng, torch, case):
    """nn.grad.conv*_input / conv*_weight on device arrays against torch's autograd and the
    CPU functions."""
    from numbaconv import nn

    case = dict(case)
    op = case.pop("op", "conv2d")
    x = rng.standard_normal(case.pop("x_shape"))
    w = rng.standard_normal(case.pop("w_shape"))
    tx = torch.from_numpy(x).requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    out = getattr(torch.nn.functional, op)(tx, tw, **case)
    g = rng.standard_normal(tuple(out.shape))
    out.backward(torch.from_numpy(g))
    dx = getattr(nn.grad, f"{op}_input")(x.shape, *on_gpu(gpu, w, g), **case)
    dw = getattr(nn.grad, f"{op}_weight")(*on_gpu(gpu, x), w.shape, gpu.to_device(g), **case)
    np.testing.assert_allclose(host(dx), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(dw), tw.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(dw), getattr(nn.grad, f"{op}_weight")(x, w.shape, g, **case),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="grad_output must have the shape"):
        getattr(nn.grad, f"{op}_weight")(*on_gpu(gpu, x), w.shape,
                                         gpu.to_device(np.ascontiguousarray(g[..., 1:])),
                                         **case)


def test_layer_norm_and_group_norm(gpu, rng, torch):
    x = special_values(rng, (2, 4, 3, 5)) * 3 + 1
    x[1] = rng.standard_normal((4, 3, 5)) * 3 + 1  # an image without specials
    tx = torch.from_numpy(x)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal((3, 5)).astype(np.float32)
    out = host(numbaconv.layer_norm(*on_gpu(gpu, x), (3, 5), *on_gpu(gpu, w, b), eps=1e-3))
    expected = torch.nn.functional.layer_norm(tx, (3, 5), torch.from_numpy(w),
                                              torch.from_numpy(b), eps=1e-3)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5, equal_nan=True)
    rows = x[1].reshape(4, 15).astype(np.float64)
    normalised = (rows - rows.mean(1, keepdims=True)) / np.sqrt(rows.var(1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(out[1], normalised.reshape(4, 3, 5) * w + b, rtol=1e-4, atol=1e-5)
    out = host(numbaconv.layer_norm(gpu.to_device(x), 5))
    np.testing.assert_allclose(out, torch.nn.functional.layer_norm(tx, (5,)), rtol=1e-4,
                               atol=1e-5, equal_nan=True)
    cw, cb = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    for groups in (1, 2, 4):
        out = host(numbaconv.group_norm(gpu.to_device(x), groups, *on_gpu(gpu, cw, cb)))
        expected = torch.nn.functional.group_norm(tx, groups, torch.from_numpy(cw),
                                                  torch.from_numpy(cb))
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5, equal_nan=True)
    out = host(numbaconv.group_norm(gpu.to_device(x[1:]), 2))
    image = x[1].reshape(2, 30).astype(np.float64)
    normalised = ((image - image.mean(1, keepdims=True))
                  / np.sqrt(image.var(1, keepdims=True) + 1e-5))
    np.testing.assert_allclose(out[0], normalised.reshape(4, 3, 5), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by num_groups"):
        numbaconv.group_norm(gpu.to_device(x), 3)
    with pytest.raises(ValueError, match="Given normalized_shape"):
        numbaconv.layer_norm(gpu.to_device(x), (4,))


@pytest.mark.parametrize("kwargs", [dict(scale_factor=2), dict(size=(5, 3), mode="nearest-exact"),
                                    dict(size=(7, 4), mode="bilinear"),
                                    dict(scale_factor=1.7, mode="bilinear", align_corners=True)])
def test_interpolate(gpu, rng, torch, kwargs):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x[0, 0, 0, 0] = np.inf  # nearest copies it; bilinear spreads it as torch does
    out = host(numbaconv.interpolate(gpu.to_device(x), **kwargs))
    expected = torch.nn.functional.interpolate(torch.from_numpy(x), **kwargs).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(out, numbaconv.interpolate(x, **kwargs))  # as the CPU rounds
    if kwargs.get("mode", "nearest") == "nearest":  # NumPy: output index d reads d // 2
        np.testing.assert_array_equal(out, x.repeat(2, axis=2).repeat(2, axis=3))


def test_interpolate_1d_and_errors(gpu, rng, torch):
    x = rng.standard_normal((2, 3, 6))
    out = host(numbaconv.interpolate(gpu.to_device(x), size=9, mode="linear"))
    np.testing.assert_allclose(out, torch.nn.functional.interpolate(
        torch.from_numpy(x), size=9, mode="linear"), rtol=1e-12)
    with pytest.raises(ValueError, match="needs a 4-D input"):
        numbaconv.interpolate(gpu.to_device(x), size=9, mode="bilinear")


@pytest.mark.parametrize("pad, mode, value", [
    ((1, 2), "constant", 3.5), ((1, -1, 2, 0), "constant", None),
    ((1, 1, 1, 1, 1, 0), "constant", 0.0),
    ((2, 1, 1, 2), "reflect", None), ((3, 0, -1, 2), "replicate", None),
    ((1, 2, 2, -1), "circular", None)])
def test_pad(gpu, rng, torch, pad, mode, value):
    x = special_values(rng, (2, 3, 4, 5))
    out = host(numbaconv.pad(gpu.to_device(x), pad, mode=mode, value=value))
    np.testing.assert_array_equal(out, numbaconv.pad(x, pad, mode=mode, value=value))
    kwargs = {} if value is None else dict(value=value)
    expected = torch.nn.functional.pad(torch.from_numpy(x), pad, mode=mode, **kwargs)
    np.testing.assert_array_equal(out, expected.numpy())


def test_pad_errors_as_on_the_cpu(gpu):
    x = np.ones((2, 3, 4), np.float32)
    for call in (lambda a: numbaconv.pad(a, (4, 0), mode="reflect"),
                 lambda a: numbaconv.pad(a, (1,)),
                 lambda a: numbaconv.pad(a, (1, 1, 1, 1, 1, 1), mode="replicate"),
                 lambda a: numbaconv.pad(a, (1, 1), mode="reflect", value=2.0),
                 lambda a: numbaconv.pad(a, (1, 1), mode="wrap")):
        with pytest.raises(ValueError) as on_cpu:
            call(x)
        with pytest.raises(ValueError) as on_device:
            call(gpu.to_device(x))
        assert str(on_device.value) == str(on_cpu.value)


def test_prelu_and_rrelu(gpu, rng, torch):
    x = special_values(rng, (2, 3, 4))
    tx = torch.from_numpy(x)
    for slopes in (np.array([0.3], np.float32), rng.standard_normal(3).astype(np.float32)):
        out = host(numbaconv.prelu(*on_gpu(gpu, x, slopes)))
        expected = np.where(x > 0, x, x * (slopes if slopes.size == 1 else slopes[:, None]))
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(out, torch.nn.functional.prelu(tx, torch.from_numpy(slopes)))
    with pytest.raises(ValueError, match="expected 1 or one per channel"):
        numbaconv.prelu(*on_gpu(gpu, x, np.ones(2, np.float32)))
    out = host(numbaconv.rrelu(gpu.to_device(x), 0.1, 0.3))
    np.testing.assert_allclose(out, np.where(x < 0, 0.2 * x, x), rtol=1e-6)
    np.testing.assert_allclose(out, torch.nn.functional.rrelu(tx, 0.1, 0.3), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="training mode"):
        numbaconv.rrelu(gpu.to_device(x), training=True)
