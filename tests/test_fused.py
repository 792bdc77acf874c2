"""fused_conv2d: a convolution whose kernels apply the activation to the rows they write,
for every kernel of every algorithm, against the convolution then the activation (the
NumPy reference, numbaconv's own activations, torch)."""

import numpy as np
import pytest

import numbaconv
from helpers import reference_conv
from test_planner import DIRECT_KERNEL_CASES

#: activation -> the same on a float64 NumPy array (NaN propagating, as torch)
ACTIVATIONS = {
    "relu": lambda y: np.where(np.isnan(y), y, np.maximum(y, 0)),
    "relu6": lambda y: np.where(np.isnan(y), y, np.clip(y, 0, 6)),
    "silu": lambda y: y / (1 + np.exp(-y)),
    "hardswish": lambda y: y * np.clip(y + 3, 0, 6) / 6,
    ("clamp", -0.5, 0.25): lambda y: np.where(np.isnan(y), y, np.clip(y, -0.5, 0.25)),
    ("clamp", None, 1.0): lambda y: np.where(np.isnan(y), y, np.minimum(y, 1.0)),
}

#: (input, weight, arguments) reaching each kernel of direct and gemm, and Winograd (which
#: applies the activation after its output transform)
CASES = [case[:3] for case in DIRECT_KERNEL_CASES] + [
    ((1, 64, 14, 14), (32, 64, 1, 1), {}),                          # gemm pointwise
    ((2, 48, 1, 1), (8, 48, 1, 1), {}),                             # gemm vector products
    ((3, 40, 1, 1), (11, 40, 1, 1), {}),                            # ... and a ragged run
    ((1, 32, 14, 14), (16, 32, 1, 1), dict(stride=2)),              # gemm pointwise, strided
    ((1, 32, 9, 9), (24, 32, 3, 3), dict(padding=1, stride=2)),     # gemm im2col_whole
    ((1, 64, 12, 12), (16, 64, 3, 3), dict(padding=8, dilation=8)),  # gemm tap products
    ((4, 64, 32, 32), (8, 64, 3, 3), dict(padding=1, algorithm="gemm")),  # gemm im2col
    ((2, 16, 12, 12), (16, 16, 3, 3), dict(padding=1)),             # winograd
]


def _reference(x, w, b, kwargs, activation):
    full = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | kwargs
    full.pop("algorithm", None)
    with np.errstate(all="ignore"):
        return ACTIVATIONS[activation](reference_conv("conv2d", x.astype(np.float64),
                                                      w.astype(np.float64),
                                                      b.astype(np.float64), **full))


@pytest.mark.parametrize("activation", list(ACTIVATIONS), ids=str)
@pytest.mark.parametrize("xs, ws, kwargs", CASES)
def test_fused_activation_on_every_kernel(rng, xs, ws, kwargs, activation):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(xs).astype(dtype) * 2
        w = rng.standard_normal(ws).astype(dtype) * 0.5
        b = rng.standard_normal(ws[0]).astype(dtype)
        expected = _reference(x, w, b, kwargs, activation)
        tol = 2e-4 if dtype == np.float32 else 1e-10
        for _ in range(2):  # the first call, then the prepared repeat
            got = numbaconv.fused_conv2d(x, w, b, **kwargs, activation=activation)
            assert got.dtype == dtype and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
        # exactly the two calls' result: the activation reads the finished output
        unfused = numbaconv.conv2d(x, w, b, **kwargs)  # (the same algorithm and kernel)
        name = activation if isinstance(activation, str) else "hardtanh"
        bounds = activation[1:] if name == "hardtanh" else ()
        if name == "hardtanh":
            low, high = (-np.inf if bounds[0] is None else bounds[0]), bounds[1]
            two_calls = np.clip(unfused, low, high)
        else:
            two_calls = getattr(numbaconv, name)(unfused)
        np.testing.assert_allclose(got, two_calls, rtol=tol / 10, atol=tol / 10)


@pytest.mark.parametrize("xs, ws, kwargs", CASES)
def test_fused_activations_propagate_nan_and_saturate_inf(xs, ws, kwargs):
    x = np.zeros(xs, np.float32)
    w = np.zeros(ws, np.float32)
    b = np.array([np.nan, np.inf, -np.inf, 1.0] * ws[0], np.float32)[:ws[0]]
    for activation in ACTIVATIONS:
        got = numbaconv.fused_conv2d(x, w, b, **kwargs, activation=activation)
        expected = _reference(x, w, b, kwargs, activation)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        finite = ~np.isnan(expected)
        np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-6)


def test_fused_conv2d_agrees_with_torch(torch, rng):
    F = torch.nn.functional
    x = rng.standard_normal((2, 8, 10, 10)).astype(np.float32)
    w = rng.standard_normal((12, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    theirs = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1)
    for activation, f in [("relu", F.relu), ("relu6", F.relu6), ("silu", F.silu),
                          ("hardswish", F.hardswish)]:
        np.testing.assert_allclose(numbaconv.fused_conv2d(x, w, b, padding=1,
                                                          activation=activation),
                                   f(theirs).numpy(), rtol=1e-5, atol=1e-5)


def test_fused_conv2d_without_activation_is_conv2d(rng):
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(numbaconv.fused_conv2d(x, w, padding=1),
                                  numbaconv.conv2d(x, w, padding=1))


def test_fused_conv2d_refuses_unknown_activations():
    x, w = np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32)
    for bad in ["gelu", ("clamp", 2.0, 1.0), ("clip", 0, 1), ["relu"], 3]:
        with pytest.raises(ValueError, match="activation"):
            numbaconv.fused_conv2d(x, w, activation=bad)
    with pytest.raises(TypeError, match="activation"):
        numbaconv.fused_conv2d(x, w, activation=("clamp", "low", 1.0))


# --------------------------------------------------------------------------- nn.fuse


def _trained_looking(model, rng):
    from numbaconv import nn

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean[...] = rng.uniform(-0.5, 0.5, size)
            module.running_var[...] = rng.uniform(0.5, 2.0, size)
            module.weight[...] = rng.uniform(0.5, 1.5, size)
            module.bias[...] = rng.uniform(-0.2, 0.2, size)
    return model


def test_fuse_folds_mobilenet_v2_and_agrees(rng):
    """torchvision's mobilenet_v2 written in numbaconv.nn: every Conv2dNormActivation and
    every projection (conv, batch norm) becomes one FusedConv2d; logits as before; the
    original model keeps its modules, weights and mode."""
    from numbaconv import nn
    from test_cnn_layers import mobilenet_v2

    model = _trained_looking(mobilenet_v2(nn, classes=10), rng)
    weights = {k: v.copy() for k, v in model.state_dict().items()}
    fused = nn.fuse(model)
    kinds = [type(m).__name__ for m in fused.modules()]
    assert kinds.count("FusedConv2d") == 52 and "BatchNorm2d" not in kinds
    assert kinds.count("Conv2d") == 0 and "ReLU6" not in kinds
    assert model.training and not fused.training
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 52
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights[key])
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    expected = model.eval()(x)
    np.testing.assert_allclose(fused(x), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    first = fused.features[0]
    assert first[0].activation == "relu6" and first[0].folded == ("1", "2")
    assert "activation='relu6'" in repr(first[0])


def test_fuse_keeps_what_it_cannot_fold(rng):
    from numbaconv import nn

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, track_running_stats=False),  # batch stats
        nn.Conv2d(4, 4, 1), nn.Hardtanh(-0.5, 0.5),                   # a clamp
        nn.Conv2d(4, 4, 1), nn.Conv2d(4, 2, 1),                       # nothing to fuse
        nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Hardswish()),  # nested
        nn.Conv2d(2, 2, 1), nn.SiLU(),                                # SiLU fused too
        nn.ConvTranspose2d(2, 2, 2), nn.ReLU())                       # not a Conv2d
    fused = nn.fuse(model)
    kinds = [type(m).__name__ for m in fused]
    assert kinds == ["Conv2d", "BatchNorm2d", "FusedConv2d", "Identity", "Conv2d", "Conv2d",
                     "Sequential", "FusedConv2d", "Identity", "ConvTranspose2d", "ReLU"]
    assert fused[2].activation == ("clamp", -0.5, 0.5) and fused[7].activation == "silu"
    assert fused[6][0].activation == "hardswish" and type(fused[6][1]).__name__ == "Identity"
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(fused(x), model.eval()(x), rtol=1e-5, atol=1e-5)
