"""The layers real CNNs need beyond convolution and pooling (issue 16): normalisation,
more activations, softmax, adaptive pooling, dropout, interpolate and pad, as functions
and as modules, against torch and against NumPy formulas written here."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv
from numbaconv import nn
from numbaconv.bench_models import builtin_models

SPECIAL = np.array([-np.inf, -7.0, -3.0, -2.5, -0.0, 0.0, 1e-40, 2.0, 3.0, 6.5, np.inf, np.nan])
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def torch_call(torch, name, *args, **kwargs):
    """torch.nn.functional.<name> on NumPy arrays (result as NumPy), or the exception."""
    convert = lambda a: torch.from_numpy(np.array(a)) if isinstance(a, np.ndarray) else a
    try:
        result = getattr(torch.nn.functional, name)(*map(convert, args), **kwargs)
    except Exception as exc:  # noqa: BLE001 - the comparison is what torch raises at all
        return exc
    if isinstance(result, tuple):
        return tuple(r.numpy() for r in result)
    return result.numpy()


def _f64(*args):
    """The arguments with float arrays as float64 (a float64 oracle)."""
    return [a.astype(np.float64) if isinstance(a, np.ndarray) else a for a in args]


# --------------------------------------------------------------------------- activations

def _relu6(x):
    return np.where(np.isnan(x), x, np.clip(x, 0, 6))


ELEMENTWISE = [
    ("relu6", {}, _relu6),
    ("hardtanh", dict(min_val=-2.0, max_val=2.5), lambda x: np.where(np.isnan(x), x,
                                                                     np.clip(x, -2, 2.5))),
    ("hardsigmoid", {}, lambda x: _relu6(x + 3) / 6),
    ("hardswish", {}, lambda x: x * _relu6(x + 3) / 6),
    ("silu", {}, lambda x: x / (1 + np.exp(-x))),
    ("gelu", {}, lambda x: x * 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2))),
    ("gelu", dict(approximate="tanh"),
     lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs, formula", ELEMENTWISE,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(ELEMENTWISE)])
def test_activations_match_torch_and_formulas(torch, rng, dtype, name, kwargs, formula):
    x = np.concatenate([SPECIAL, rng.standard_normal(60) * 5]).astype(dtype).reshape(2, 3, 12)
    original = x.copy()
    out = getattr(numbaconv, name)(x, **kwargs)
    assert out.dtype == dtype and out.shape == x.shape
    theirs = torch_call(torch, name, x, **kwargs)
    keep = np.isfinite(x) | (name != "gelu")  # torch's float32 gelu(inf) is NaN
    # Outputs are O(1): an absolute tolerance covers the tails, where torch's own 1 +
    # erf(x / sqrt 2) loses digits (float32: up to 6e-7 off) and ours, from erfc, does not.
    atol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out[keep], theirs[keep], rtol=2e-6, atol=atol)
    with np.errstate(all="ignore"):
        expected = formula(x.astype(np.float64))
    finite = np.isfinite(x)  # (inf * 0 and friends: torch decides, checked above)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=2e-6, atol=atol)
    np.testing.assert_array_equal(x, original)


@pytest.mark.parametrize("name", ["relu6", "hardtanh", "hardsigmoid", "hardswish", "silu"])
def test_inplace_activations_overwrite_their_input(name):
    x = np.linspace(-8, 8, 33)
    expected = getattr(numbaconv, name)(x)
    result = getattr(numbaconv, name)(x, inplace=True)
    assert result is x
    np.testing.assert_array_equal(x, expected)
    frozen = np.ones(3)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        getattr(numbaconv, name)(frozen, inplace=True)


def test_activation_argument_errors_match_torch(torch):
    x = np.ones(3)
    for call, error in [(lambda lib: lib.hardtanh(x, 2.0, 1.0), ValueError),
                        (lambda lib: lib.gelu(x, approximate="erf"), ValueError)]:
        assert isinstance(call(_TorchF(torch)), Exception)
        with pytest.raises(error):
            call(numbaconv)


class _TorchF:
    """torch.nn.functional with NumPy in and out, for calls written once for both."""

    def __init__(self, torch):
        self.torch = torch

    def __getattr__(self, name):
        return lambda *args, **kwargs: torch_call(self.torch, name, *args, **kwargs)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_matches_torch(torch, rng, name, dtype):
    x = (rng.standard_normal((3, 4, 5)) * 30).astype(dtype)
    x[0, 0, 0] = 1000.0  # no overflow: computed from x - max
    for dim in (0, 1, 2, -1, -3):
        out = getattr(numbaconv, name)(x, dim=dim)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, torch_call(torch, name, x, dim=dim), rtol=1e-5,
                                   atol=1e-6)
    for dim in (3, -4):
        assert isinstance(torch_call(torch, name, x, dim=dim), IndexError)
        with pytest.raises(IndexError, match="out of range"):
            getattr(numbaconv, name)(x, dim=dim)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        implicit = getattr(numbaconv, name)(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(implicit, torch_call(torch, name, x), rtol=1e-5, atol=1e-6)
    wide = getattr(numbaconv, name)(x.astype(np.float32), dim=1, dtype=np.float64)
    assert wide.dtype == np.float64


def test_softmax_rows_sum_to_one_and_modules(rng):
    x = rng.standard_normal((4, 10))
    np.testing.assert_allclose(numbaconv.softmax(x, dim=1).sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(nn.LogSoftmax(dim=1)(x), np.log(nn.Softmax(dim=1)(x)),
                               rtol=1e-12)


# --------------------------------------------------------------------------- normalisation

def reference_batch_norm(x, mean, var, weight, bias, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


@PROPERTY
@given(st.data())
def test_batch_norm_matches_torch_and_the_formula(torch, data):
    draw = data.draw
    rank = draw(st.integers(2, 5))
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 5))) + tuple(
        draw(st.integers(1, 5)) for _ in range(rank - 2))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    training = draw(st.booleans())
    affine = draw(st.booleans())
    momentum, eps = draw(st.sampled_from([0.1, 0.5, 1.0])), draw(st.sampled_from([1e-5, 1e-2]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    channels = shape[1]
    mean, var = rng.standard_normal(channels).astype(dtype), rng.uniform(0.5, 2, channels).astype(dtype)
    weight = rng.standard_normal(channels).astype(dtype) if affine else None
    bias = rng.standard_normal(channels).astype(dtype) if affine else None
    t_mean, t_var = mean.copy(), var.copy()
    args = dict(training=training, momentum=momentum, eps=eps)
    t = lambda a: None if a is None else torch.from_numpy(a)  # sharing memory: updated
    try:
        expected = torch.nn.functional.batch_norm(t(x), t(t_mean), t(t_var), t(weight), t(bias),
                                                  **args).numpy()
    except ValueError as exc:
        expected = exc
    if isinstance(expected, Exception):  # one value per channel while training
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            numbaconv.batch_norm(x, mean, var, weight, bias, **args)
        return
    out = numbaconv.batch_norm(x, mean, var, weight, bias, **args)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(mean, t_mean, rtol=tol, atol=tol)  # the running statistics
    np.testing.assert_allclose(var, t_var, rtol=tol, atol=tol)
    x64 = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    if training:  # the batch's statistics (the running ones are updated, not used)
        stats = (x64.mean(axis=axes), x64.var(axis=axes))
    else:
        stats = (mean.astype(np.float64), var.astype(np.float64))
    reference = reference_batch_norm(x64, *stats, weight, bias, eps)
    np.testing.assert_allclose(out, reference, rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training_in_one_launch_equals_two(dtype, affine, rng, monkeypatch):
    """Training-mode batch_norm's one-launch kernel (statistics, then the output, a job
    per channel) gives the two-launch path's output, batch statistics and running
    statistics bit for bit, signed zeros included (a channel of zeros, a bias of -0.0)."""
    from numbaconv import normalization

    x = (rng.standard_normal((3, 20, 5, 7)) * 3 + 2).astype(dtype)
    x[:, 4] = 0  # mean 0, scale 1 / sqrt(eps): x * a + s of zeros
    weight = rng.standard_normal(20).astype(dtype) if affine else None
    bias = rng.standard_normal(20).astype(dtype) if affine else None
    if affine:
        bias[4] = -0.0
    results = []
    for per_thread in (0, 10**9):  # the one launch, then the two
        monkeypatch.setattr(normalization, "BATCH_NORM_FUSED_CHANNELS_PER_THREAD", per_thread)
        mean, var = np.zeros(20), np.ones(20)
        out = numbaconv.batch_norm(x, mean, var, weight, bias, training=True, momentum=0.3)
        results.append((out, mean, var))
    for fused, plain in zip(*results):
        assert fused.dtype == plain.dtype and fused.tobytes() == plain.tobytes()


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: numbaconv.batch_norm(np.ones(3), None, None, training=True), ValueError, "2 dim"),
    (lambda: numbaconv.batch_norm(np.ones((2, 3)), None, None), ValueError, "evaluation mode"),
    (lambda: numbaconv.batch_norm(np.ones((2, 3)), np.zeros(4), np.ones(3)), ValueError,
     "3 elements"),
    (lambda: numbaconv.batch_norm(np.ones((2, 3)), None, None, np.ones(2), training=True),
     ValueError, "weight should contain 3"),
    (lambda: numbaconv.batch_norm(np.ones((1, 3)), None, None, training=True), ValueError,
     "more than 1 value"),
    (lambda: numbaconv.batch_norm(np.ones((2, 3)), [0.0] * 3, np.ones(3), training=True),
     TypeError, "writeable NumPy array"),
    (lambda: numbaconv.layer_norm(np.ones((2, 3)), 4), ValueError, "normalized_shape"),
    (lambda: numbaconv.layer_norm(np.ones((2, 3)), 3, np.ones(4)), ValueError, "weight"),
    (lambda: numbaconv.layer_norm(np.ones((2, 3)), 3.0), TypeError, "normalized_shape"),
    (lambda: numbaconv.group_norm(np.ones((2, 6, 2)), 4), ValueError, "divisible by num_groups"),
    (lambda: numbaconv.group_norm(np.ones((2, 6, 2)), 0), ValueError, "num_groups"),
    (lambda: numbaconv.group_norm(np.ones(6), 2), ValueError, "2 dim"),
])
def test_normalisation_errors(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


@PROPERTY
@given(st.data())
def test_layer_and_group_norm_match_torch(torch, data):
    draw = data.draw
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.integers(2, 4))))
    x = (rng.standard_normal(shape) * 4 + 1).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    normalized = shape[-draw(st.integers(1, len(shape))):]
    affine = draw(st.booleans())
    w = rng.standard_normal(normalized).astype(dtype) if affine else None
    b = rng.standard_normal(normalized).astype(dtype) if affine else None
    out = numbaconv.layer_norm(x, normalized, w, b, eps=1e-5)
    # torch in float64: in float32 its own x - mean cancels, and a group of one value
    # (variance 0) multiplies that error by 1 / sqrt(eps) (1.6e-4 off where the exact
    # answer, the bias, is what numbaconv gives)
    np.testing.assert_allclose(out, torch_call(torch, "layer_norm", *_f64(x, normalized, w, b)),
                               rtol=tol, atol=tol)
    axes = tuple(range(x.ndim - len(normalized), x.ndim))
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(axis=axes, keepdims=True)) / np.sqrt(x64.var(axis=axes, keepdims=True)
                                                               + 1e-5)
    ref = ref * (1 if w is None else w) + (0 if b is None else b)
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    channels = shape[1]
    groups = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0]))
    w = rng.standard_normal(channels).astype(dtype) if affine else None
    b = rng.standard_normal(channels).astype(dtype) if affine else None
    expected = torch_call(torch, "group_norm", *_f64(x, groups, w, b))
    if isinstance(expected, Exception):  # one value per group
        with pytest.raises(ValueError, match="more than 1 value per group"):
            numbaconv.group_norm(x, groups, w, b)
        return
    out = numbaconv.group_norm(x, groups, w, b)
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    grouped = x64.reshape(shape[0], groups, -1)
    ref = ((grouped - grouped.mean(axis=2, keepdims=True))
           / np.sqrt(grouped.var(axis=2, keepdims=True) + 1e-5)).reshape(shape)
    per_channel = (1, channels) + (1,) * (len(shape) - 2)
    if w is not None:
        ref = ref * w.reshape(per_channel) + b.reshape(per_channel)
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


# --------------------------------------------------------------------------- adaptive pooling

@PROPERTY
@given(st.data())
def test_adaptive_pooling_matches_torch(torch, data):
    draw = data.draw
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batched = draw(st.booleans())
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    x = rng.standard_normal(((2,) if batched else ()) + (3, h, w)).astype(np.float32)
    if draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = np.nan
    size = draw(st.sampled_from([draw(st.integers(0, 14)),
                                 (draw(st.integers(1, 14)), draw(st.integers(1, 14))),
                                 (None, draw(st.integers(1, 5)))]))
    expected = torch_call(torch, "adaptive_avg_pool2d", x, size)
    np.testing.assert_allclose(numbaconv.adaptive_avg_pool2d(x, size), expected, rtol=1e-6,
                               atol=1e-6)
    values, indices = numbaconv.adaptive_max_pool2d(x, size, return_indices=True)
    t_values, t_indices = torch_call(torch, "adaptive_max_pool2d", x, size, return_indices=True)
    np.testing.assert_array_equal(values, t_values)
    np.testing.assert_array_equal(indices, t_indices)
    assert indices.dtype == np.int64
    one_d = x.reshape(-1, x.shape[-2], x.shape[-1])
    length = draw(st.integers(0, 14))
    np.testing.assert_allclose(numbaconv.adaptive_avg_pool1d(one_d, length),
                               torch_call(torch, "adaptive_avg_pool1d", one_d, length),
                               rtol=1e-6, atol=1e-6)


def test_global_average_pooling_is_the_mean(rng):
    x = rng.standard_normal((2, 5, 7, 6))
    np.testing.assert_allclose(numbaconv.adaptive_avg_pool2d(x, 1)[..., 0, 0],
                               x.mean(axis=(2, 3)), rtol=1e-12)


@pytest.mark.parametrize("x_shape, size", [((3, 5), 2), ((2, 3, 0, 5), 2), ((2, 3, 5, 5), -1),
                                           ((2, 3, 5, 5), (1, 2, 3))])
def test_adaptive_pooling_rejects_what_torch_rejects(torch, x_shape, size):
    x = np.ones(x_shape, np.float32)
    assert isinstance(torch_call(torch, "adaptive_avg_pool2d", x, size), Exception)
    with pytest.raises(ValueError):
        numbaconv.adaptive_avg_pool2d(x, size)
    with pytest.raises(TypeError):
        numbaconv.adaptive_avg_pool2d(np.ones((1, 2, 3, 3)), 2.0)


# --------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_dropout_statistics_and_scaling(p):
    x = np.ones((200, 500), np.float32)
    out = numbaconv.dropout(x, p, rng=0)
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.01
    if p < 1:
        np.testing.assert_allclose(out[kept], np.float32(1 / (1 - p)))
    np.testing.assert_array_equal(numbaconv.dropout(x, p, training=False), x)
    np.testing.assert_array_equal(numbaconv.dropout(x, p, rng=3), numbaconv.dropout(x, p, rng=3))


def test_dropout2d_drops_whole_channels():
    x = np.ones((50, 40, 3, 3))
    out = numbaconv.dropout2d(x, 0.5, rng=1)
    per_channel = out.reshape(50, 40, 9)
    assert ((per_channel == 0).all(axis=2) | (per_channel == 2).all(axis=2)).all()
    assert abs((per_channel[:, :, 0] == 0).mean() - 0.5) < 0.05
    with pytest.warns(UserWarning, match="3D input"):
        numbaconv.dropout2d(np.ones((2, 3, 4)), 0.5)


def test_dropout_errors_and_inplace(torch):
    for p in (-0.1, 1.5):
        assert isinstance(torch_call(torch, "dropout", np.ones(3), p), ValueError)
        with pytest.raises(ValueError, match="between 0 and 1"):
            numbaconv.dropout(np.ones(3), p)
    x = np.ones(1000)
    assert numbaconv.dropout(x, 0.5, inplace=True, rng=0) is x and (x == 0).any()


def test_dropout_modules_follow_train_and_eval():
    drop = nn.Dropout(0.5, rng=0)
    x = np.ones((10, 10))
    assert (drop(x) == 0).any()
    assert (drop.eval()(x) == x).all()
    assert (nn.Dropout2d(0.3).eval()(np.ones((2, 3, 4, 4))) == 1).all()


# --------------------------------------------------------------------------- interpolate, pad

INTERPOLATIONS = [
    dict(size=(11, 4)), dict(size=13), dict(scale_factor=1.7), dict(scale_factor=(0.5, 2.3)),
    dict(scale_factor=0.4), dict(scale_factor=2.0, recompute_scale_factor=True),
    dict(scale_factor=3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("nearest-exact", None),
                                                 ("bilinear", False), ("bilinear", True)])
@pytest.mark.parametrize("kwargs", INTERPOLATIONS)
def test_interpolate_matches_torch(torch, rng, dtype, mode, align_corners, kwargs):
    for shape in [(2, 3, 7, 5), (1, 2, 3, 9)]:
        x = rng.standard_normal(shape).astype(dtype)
        expected = torch_call(torch, "interpolate", x, mode=mode, align_corners=align_corners,
                              **kwargs)
        if isinstance(expected, Exception):
            with pytest.raises(ValueError):
                numbaconv.interpolate(x, mode=mode, align_corners=align_corners, **kwargs)
            continue
        out = numbaconv.interpolate(x, mode=mode, align_corners=align_corners, **kwargs)
        assert out.shape == expected.shape and out.dtype == dtype
        if mode.startswith("nearest"):  # the same source pixels, exactly
            np.testing.assert_array_equal(out, expected)
        else:
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("kwargs", [dict(size=17), dict(scale_factor=0.45), dict(size=1)])
def test_interpolate_1d_matches_torch(torch, rng, mode, kwargs):
    x = rng.standard_normal((2, 3, 10))
    np.testing.assert_allclose(numbaconv.interpolate(x, mode=mode, **kwargs),
                               torch_call(torch, "interpolate", x, mode=mode, **kwargs),
                               rtol=1e-12, atol=1e-12)


def test_bilinear_align_corners_keeps_the_corners_and_is_linear(rng):
    x = rng.standard_normal((1, 1, 4, 5))
    out = numbaconv.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(out[0, 0, [0, 0, -1, -1], [0, -1, 0, -1]],
                               x[0, 0, [0, 0, -1, -1], [0, -1, 0, -1]], rtol=1e-12)
    ramp = np.add.outer(np.arange(4.0), 2 * np.arange(5.0))[None, None]
    up = numbaconv.interpolate(ramp, size=(7, 9), mode="bilinear", align_corners=True)
    expected = np.add.outer(np.linspace(0, 3, 7), 2 * np.linspace(0, 4, 9))
    np.testing.assert_allclose(up[0, 0], expected, atol=1e-12)


@pytest.mark.parametrize("kwargs, error", [
    (dict(size=4, scale_factor=2), ValueError), (dict(), ValueError),
    (dict(size=4, mode="nearest", align_corners=True), ValueError),
    (dict(size=4, mode="bicubic"), NotImplementedError),
    (dict(size=4, mode="cubic"), ValueError), (dict(size=(4, 4, 4)), ValueError),
    (dict(size=4, mode="linear"), ValueError),  # linear needs a 3-D input
    (dict(scale_factor=0.1), ValueError),  # an empty output
])
def test_interpolate_errors(kwargs, error):
    with pytest.raises(error):
        numbaconv.interpolate(np.ones((1, 2, 5, 5)), **kwargs)


PADS = [((1, 2), "constant", None), ((-1, 1, 0, -1), "constant", 2.5),
        ((1, 1, 1, 1, 1, 1, 1, 1), "constant", None), ((1, 2, 2, 0), "reflect", None),
        ((3, 0), "reflect", None), ((-1, 2), "reflect", None), ((1, 1, 3, 3), "replicate", None),
        ((-1, 2, 2, -2), "replicate", None), ((4, 0), "replicate", None),
        ((1, 1, 2, 5), "circular", None), ((-1, 2), "circular", None), ((4, 4), "circular", None),
        ((1, 1, 1, 1, 1, 1), "reflect", None), ((4, 0), "reflect", None),
        ((0, 7), "circular", None), ((1, 1), "reflect", 1.0), ((1,), "constant", None),
        ((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), "constant", None), ((-3, -2), "constant", None)]


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("amounts, mode, value", PADS)
def test_pad_matches_torch(torch, rng, shape, amounts, mode, value):
    x = rng.standard_normal(shape)
    expected = torch_call(torch, "pad", x, amounts, mode=mode, value=value)
    if isinstance(expected, Exception):
        with pytest.raises((ValueError, TypeError)):
            numbaconv.pad(x, amounts, mode=mode, value=value)
        return
    out = numbaconv.pad(x, amounts, mode=mode, value=value)
    np.testing.assert_array_equal(out, expected)


def test_pad_rejects_unknown_modes_and_bad_pads():
    with pytest.raises(ValueError, match="mode must be one of"):
        numbaconv.pad(np.ones((2, 2)), (1, 1), mode="mirror")
    with pytest.raises(TypeError, match="sequence of ints"):
        numbaconv.pad(np.ones((2, 2)), (1.0, 1))


# --------------------------------------------------------------------------- modules

MODULES = [
    ("BatchNorm2d", (4,), {}), ("BatchNorm2d", (4,), dict(momentum=None, affine=False)),
    ("BatchNorm2d", (4,), dict(track_running_stats=False)), ("BatchNorm1d", (3,), {}),
    ("BatchNorm2d", (4,), dict(bias=False)), ("GroupNorm", (2, 4), dict(bias=False)),
    ("LayerNorm", ((3, 4),), {}), ("LayerNorm", (5,), dict(elementwise_affine=False)),
    ("LayerNorm", (5,), dict(bias=False)), ("GroupNorm", (2, 4), {}),
    ("GroupNorm", (1, 3), dict(affine=False)), ("ReLU6", (), {}), ("ReLU6", (True,), {}),
    ("Hardtanh", (-2.0, 2.0), {}), ("Hardswish", (), {}), ("Hardsigmoid", (), {}),
    ("SiLU", (), {}), ("GELU", (), {}), ("GELU", (), dict(approximate="tanh")),
    ("Softmax", (), dict(dim=1)), ("LogSoftmax", (), dict(dim=-1)), ("Softmax", (), {}),
    ("AdaptiveAvgPool2d", ((5, 7),), {}), ("AdaptiveAvgPool2d", (1,), {}),
    ("AdaptiveAvgPool1d", (3,), {}), ("AdaptiveMaxPool2d", (2,), {}),
    ("Dropout", (), {}), ("Dropout", (0.2, True), {}), ("Dropout2d", (0.1,), {}),
    ("Identity", (), {}), ("Upsample", (), dict(scale_factor=2)),
    ("Upsample", (), dict(size=(4, 5), mode="bilinear", align_corners=True)),
]


@pytest.mark.parametrize("name, args, kwargs", MODULES)
def test_module_repr_and_state_dict_keys_match_torch(torch, name, args, kwargs):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value.numpy())
        assert ours.state_dict()[key].dtype.kind == value.numpy().dtype.kind


@pytest.mark.parametrize("kwargs", [{}, dict(momentum=None), dict(momentum=0.3, affine=False),
                                    dict(track_running_stats=False)])
def test_batch_norm_module_trains_and_evaluates_as_torch(torch, rng, kwargs):
    ours, theirs = nn.BatchNorm2d(3, **kwargs), torch.nn.BatchNorm2d(3, **kwargs)
    if ours.affine:
        ours.weight[...] = theirs.weight.data.numpy()[...] = rng.uniform(0.5, 2, 3)
        ours.bias[...] = theirs.bias.data.numpy()[...] = rng.standard_normal(3)
    for step in range(3):
        x = (rng.standard_normal((4, 3, 5, 5)) * (step + 1) + step).astype(np.float32)
        np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-5, atol=1e-5)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-5)
    ours.eval(), theirs.eval()
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="expected 4D input"):
        ours(np.ones((2, 3)))


def test_module_containers_match_torch(torch):
    def build(lib):
        return lib.ModuleDict({"blocks": lib.ModuleList([lib.Linear(3, 3) for _ in range(3)]
                                                        + [lib.ReLU()]),
                               "head": lib.Sequential(lib.Identity(), lib.Linear(3, 2))})

    ours, theirs = build(nn), build(torch.nn)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours["extra"] = nn.Tanh()
    assert list(ours) == ["blocks", "head", "extra"] and "head" in ours
    assert isinstance(ours["blocks"][1:3], nn.ModuleList) and len(ours["blocks"][1:3]) == 2
    del ours["blocks"][0]
    assert list(ours["blocks"]._modules) == ["0", "1", "2"]
    with pytest.raises(TypeError, match="not a Module"):
        nn.ModuleList([nn.ReLU(), 3])
    with pytest.raises(KeyError, match="contain"):
        nn.ModuleDict({"a.b": nn.ReLU()})


# --------------------------------------------------------------------------- whole networks

def resnet18(lib, classes=10):
    """torchvision's resnet18, layer for layer (numbaconv.bench_models builds it)."""
    return builtin_models(lib)["resnet18"](classes)


def mobilenet_v2_like(lib, classes=10):
    """MobileNetV2's building blocks (inverted residuals with ReLU6, depthwise convs,
    BatchNorm, Dropout before the classifier), a few of them."""

    def conv_bn(cin, cout, k, stride, groups=1, act=True):
        layers = [lib.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                  lib.BatchNorm2d(cout)]
        return lib.Sequential(*(layers + ([lib.ReLU6(inplace=True)] if act else [])))

    class InvertedResidual(lib.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.use_res = stride == 1 and cin == cout
            self.conv = lib.Sequential(conv_bn(cin, hidden, 1, 1), conv_bn(hidden, hidden, 3,
                                                                           stride, hidden),
                                       lib.Conv2d(hidden, cout, 1, bias=False),
                                       lib.BatchNorm2d(cout))

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNet(lib.Module):
        def __init__(self):
            super().__init__()
            self.features = lib.Sequential(conv_bn(3, 16, 3, 2), InvertedResidual(16, 24, 2, 6),
                                           InvertedResidual(24, 24, 1, 6),
                                           InvertedResidual(24, 32, 2, 6), conv_bn(32, 64, 1, 1))
            self.classifier = lib.Sequential(lib.Dropout(0.2), lib.Linear(64, classes))

        def forward(self, x):
            x = lib.functional.adaptive_avg_pool2d(self.features(x), 1)
            return self.classifier(x.reshape(x.shape[0], -1))

    return MobileNet()


def mobilenet_v2(lib, classes=1000):
    """torchvision's mobilenet_v2, layer for layer (numbaconv.bench_models builds it)."""
    return builtin_models(lib)["mobilenet_v2"](classes)


def trained_looking(torch, model):
    """Batch-norm statistics and affine parameters away from their initial 0 and 1."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.num_batches_tracked += 100
    return model.eval()


@pytest.mark.parametrize("name, build", [("resnet18", resnet18), ("mobilenet_v2", mobilenet_v2)])
def test_torchvision_models_load_strictly_into_numbaconv_nn(torch, torchvision, rng, name, build):
    """torchvision's own resnet18 and mobilenet_v2 (random weights): their state dicts load
    strictly into the same networks written in numbaconv.nn, and the logits agree."""
    torch.manual_seed(0)
    theirs = trained_looking(torch, getattr(torchvision.models, name)(weights=None))
    ours = build(nn, classes=1000)
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    assert ours.load_state_dict(state) == ([], [])
    ours.eval()
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("build", [resnet18, mobilenet_v2_like])
def test_cnn_with_batch_norm_loads_torch_weights_strictly_and_agrees(torch, rng, build):
    torch.manual_seed(0)
    theirs = trained_looking(torch, build(torch.nn))
    ours = build(nn)
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    assert ours.load_state_dict(state) == ([], [])  # strict: every key, integer ones too
    ours.eval()
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    got = ours(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    assert int(ours.get_buffer(next(k for k in state if k.endswith("num_batches_tracked")))) == 100





@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 3, 0), (0, 4), (2, 4, 0, 5)])
def test_normalisations_of_empty_inputs_match_torch(torch, shape):
    x = np.ones(shape, np.float32)
    channels = shape[1]
    stats = np.zeros(channels, np.float32), np.ones(channels, np.float32)
    for ours, theirs in [
        (numbaconv.batch_norm(x, *stats), torch_call(torch, "batch_norm", x, *stats)),
        (numbaconv.group_norm(x, 1), torch_call(torch, "group_norm", x, 1)),
        (numbaconv.layer_norm(x, shape[-1:]), torch_call(torch, "layer_norm", x, shape[-1:])),
    ]:
        assert ours.shape == theirs.shape and ours.dtype == np.float32
