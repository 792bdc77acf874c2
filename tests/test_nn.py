"""numbaconv.nn against torch.nn: reprs, initialisation, state dicts, forward passes, errors."""

import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv
from helpers import TOLERANCE, WINOGRAD_TOLERANCE, relative_error
from numbaconv import nn

# (class name, positional args, keyword args, input shape or None): the same call builds
# the numbaconv module and the torch one.
MODULE_CASES = [
    ("Conv2d", (3, 6, 3), {}, (2, 3, 9, 9)),
    ("Conv2d", (4, 6, (3, 5)), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2,
                                     bias=False), (2, 4, 11, 12)),
    ("Conv2d", (3, 6, 3), dict(padding="same", padding_mode="reflect", dilation=2), (1, 3, 9, 9)),
    ("Conv2d", (4, 4, 3), dict(padding="valid", groups=4, padding_mode="circular"), (4, 7, 7)),
    ("Conv2d", (2, 3, 3), dict(padding=1, padding_mode="replicate"), (2, 2, 5, 6)),
    ("Conv1d", (3, 5, 4), dict(stride=2, padding=1), (2, 3, 17)),
    ("Conv1d", (2, 4, 3), dict(padding="same", padding_mode="circular"), (2, 10)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 5, 6)),
    ("ConvTranspose2d", (4, 6, (2, 3)), dict(stride=(2, 3), groups=2, dilation=2, bias=False),
     (1, 4, 4, 4)),
    ("ConvTranspose1d", (3, 2, 5), dict(stride=3, padding=2), (2, 3, 7)),
    ("MaxPool2d", (2,), {}, (2, 3, 8, 9)),
    ("MaxPool2d", ((3, 2),), dict(stride=(2, 1), padding=1, dilation=(1, 2), ceil_mode=True),
     (2, 3, 10, 9)),
    ("MaxPool1d", (3,), dict(stride=2, padding=1), (2, 3, 11)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False),
     (2, 3, 10, 9)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (3, 8, 8)),
    ("AvgPool1d", (4,), dict(stride=1, padding=2), (2, 3, 9)),
    ("MaxUnpool2d", (2,), {}, None),
    ("MaxUnpool2d", ((3, 2),), dict(stride=(2, 1), padding=(1, 0)), None),
    ("Linear", (7, 5), {}, (2, 3, 7)),
    ("Linear", (7, 5), dict(bias=False), (4, 7)),
    ("ReLU", (), {}, (3, 4, 5)),
    ("ReLU", (), dict(inplace=True), (3, 4, 5)),
    ("Sigmoid", (), {}, (3, 4)),
    ("Tanh", (), {}, (3, 4)),
    ("LeakyReLU", (), {}, (3, 4)),
    ("LeakyReLU", (0.2, True), {}, (3, 4)),
    ("PReLU", (), {}, (2, 3, 4)),
    ("PReLU", (3, 0.1), {}, (2, 3, 4)),
    ("RReLU", (), {}, (3, 4)),
    ("RReLU", (0.1, 0.3), {}, (3, 4)),
    ("Flatten", (), {}, (2, 3, 4, 5)),
    ("Flatten", (0, 2), {}, (2, 3, 4, 5)),
    ("Flatten", (-3, -2), {}, (2, 3, 4, 5)),
]
CASE_IDS = [f"{name}-{i}" for i, (name, *_rest) in enumerate(MODULE_CASES)]


def torch_output(torch, module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x.copy())).numpy()


def from_torch(torch_module):
    """A torch module's state dict as NumPy arrays, as a user would convert it."""
    return {key: value.numpy() for key, value in torch_module.state_dict().items()}


@pytest.mark.parametrize("name, args, kwargs, shape", MODULE_CASES, ids=CASE_IDS)
def test_repr_matches_torch(torch, name, args, kwargs, shape):
    assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(torch.nn, name)(*args,
                                                                                    **kwargs))


@pytest.mark.parametrize("name, args, kwargs, shape",
                         # MaxUnpool2d takes indices: test_max_pool_unpool_round_trip
                         [case for case in MODULE_CASES if case[3] is not None])
def test_forward_matches_torch_with_copied_weights(torch, rng, name, args, kwargs, shape):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    ours.eval(), theirs.eval()  # RReLU: the deterministic mean slope in both
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(from_torch(theirs))
    x = rng.standard_normal(shape).astype(np.float32)
    x_before = x.copy()
    want = torch_output(torch, theirs, x)
    got = ours(x)
    assert got.shape == want.shape and got.dtype == np.float32
    assert relative_error(got, want) <= TOLERANCE["float32"]
    if not kwargs.get("inplace") and not (len(args) > 1 and args[1] is True):
        np.testing.assert_array_equal(x, x_before)  # inputs are never modified


def test_max_pool_unpool_round_trip(torch, rng):
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    values, indices = pool(x)
    t_values, t_indices = torch.nn.MaxPool2d(2, return_indices=True)(torch.from_numpy(x))
    np.testing.assert_array_equal(indices, t_indices.numpy())
    got = unpool(values, indices, output_size=x.shape)
    want = torch.nn.MaxUnpool2d(2)(t_values, t_indices, output_size=x.shape).numpy()
    assert got.shape == (2, 3, 9, 8)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("output_size", [(9, 11), (10, 12), (2, 6, 10, 11), [9, 12]])
def test_conv_transpose_output_size_matches_torch(torch, rng, output_size):
    ours, theirs = nn.ConvTranspose2d(6, 2, 3, stride=2, padding=1), torch.nn.ConvTranspose2d(
        6, 2, 3, stride=2, padding=1)
    ours.load_state_dict(from_torch(theirs))
    x = rng.standard_normal((2, 6, 5, 6)).astype(np.float32)
    with torch.no_grad():
        want = theirs(torch.from_numpy(x), output_size=list(output_size)).numpy()
    got = ours(x, output_size=output_size)
    assert got.shape == want.shape
    assert relative_error(got, want) <= TOLERANCE["float32"]


@pytest.mark.parametrize("output_size", [(8, 11), (11, 11), (9,), (1, 2, 9, 11, 1)])
def test_conv_transpose_output_size_rejected_like_torch(torch, output_size):
    x = np.zeros((2, 6, 5, 6), np.float32)
    with pytest.raises(ValueError):
        torch.nn.ConvTranspose2d(6, 2, 3, stride=2, padding=1)(torch.from_numpy(x),
                                                               output_size=list(output_size))
    with pytest.raises(ValueError, match="output_size|output size"):
        nn.ConvTranspose2d(6, 2, 3, stride=2, padding=1)(x, output_size=output_size)


# --------------------------------------------------------------------------- initialisation

INIT_CASES = [  # (class name, args, kwargs, torch's fan_in of the weight)
    ("Conv2d", (16, 32, 3), {}, 16 * 9),
    ("Conv2d", (16, 32, 3), dict(groups=4), 4 * 9),
    ("Conv1d", (8, 64, 5), {}, 8 * 5),
    ("ConvTranspose2d", (8, 64, 4), {}, 64 * 16),  # weight (in, out/groups, k, k)
    ("ConvTranspose2d", (8, 64, 4), dict(groups=2), 32 * 16),
    ("Linear", (400, 120), {}, 400),
]


@pytest.mark.parametrize("name, args, kwargs, fan_in", INIT_CASES)
def test_default_initialisation_is_torchs_distribution(torch, name, args, kwargs, fan_in):
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) and the bias rule agree
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    ours = getattr(nn, name)(*args, **kwargs, rng=0)
    for w in (ours.weight, theirs.weight.detach().numpy()):  # the same U(-b, b) in both
        assert w.dtype == np.float32
        assert 0.95 * bound < np.abs(w).max() <= bound  # the whole interval is used
        assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound  # U(-b, b): std b/sqrt(3)
        assert abs(w.mean()) < 0.05 * bound
    for b in (ours.bias, theirs.bias.detach().numpy()):
        assert b.dtype == np.float32 and b.shape == (args[1],)  # out_channels/out_features
        assert np.abs(b).max() <= bound and b.std() > 0.3 * bound


def test_initialisation_is_seedable():
    a, b, c = nn.Conv2d(3, 8, 3, rng=7), nn.Conv2d(3, 8, 3, rng=7), nn.Conv2d(3, 8, 3, rng=8)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    assert not np.array_equal(a.weight, c.weight)
    generator = np.random.default_rng(7)
    d = nn.Conv2d(3, 8, 3, rng=generator)
    np.testing.assert_array_equal(d.weight, a.weight)
    e = nn.Conv2d(3, 8, 3, rng=generator)  # the generator moved on
    assert not np.array_equal(e.weight, a.weight)
    e.reset_parameters(7)
    np.testing.assert_array_equal(e.weight, a.weight)
    np.testing.assert_array_equal(e.bias, a.bias)


def test_dtype_option_and_prelu_init():
    layer = nn.Linear(3, 2, dtype=np.float64, rng=0)
    assert layer.weight.dtype == np.float64 and layer.bias.dtype == np.float64
    assert layer(np.ones((1, 3))).dtype == np.float64
    np.testing.assert_array_equal(nn.PReLU(3, 0.1).weight, np.full(3, 0.1, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        nn.Conv2d(1, 1, 1, dtype=np.int32)


# --------------------------------------------------------------------------- state dicts


def user_defined_net(lib):
    """The same small model subclassing torch.nn.Module or numbaconv.nn.Module."""

    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.features = lib.Sequential(lib.Conv2d(1, 4, 3), lib.ReLU(), lib.MaxPool2d(2))
            self.head = lib.Linear(4 * 3 * 3, 5)
            self.act = lib.PReLU()

        def forward(self, x):
            y = self.features(x)
            return self.act(self.head(y.reshape(y.shape[0], -1)))

    return Net()


def test_user_defined_model_keys_and_outputs_match_torch(torch, rng):
    theirs, ours = user_defined_net(torch.nn), user_defined_net(nn)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "features.0.weight", "features.0.bias", "head.weight", "head.bias", "act.weight"]
    assert [n for n, _ in ours.named_children()] == ["features", "head", "act"]
    ours.load_state_dict(from_torch(theirs))
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    assert relative_error(ours(x), torch_output(torch, theirs, x)) <= TOLERANCE["float32"]
    assert repr(ours).replace("Net(", "") == repr(theirs).replace("Net(", "")


def test_state_dict_shares_arrays_and_load_copies():
    model = nn.Sequential(nn.Linear(3, 2, rng=0), nn.ReLU())
    state = model.state_dict()
    assert state["0.weight"] is model[0].weight
    new = {"0.weight": np.arange(6.0).reshape(2, 3), "0.bias": np.array([1.0, 2.0])}
    result = model.load_state_dict(new)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert model[0].weight.dtype == np.float32  # cast to the parameter's dtype
    np.testing.assert_array_equal(model[0].weight, new["0.weight"])
    new["0.weight"][:] = -1  # the model holds a copy, not the caller's array
    assert model[0].weight[0, 1] == 1.0
    assert state["0.weight"] is model[0].weight  # copied into the existing arrays


def test_load_state_dict_accepts_torch_tensors(torch):
    theirs = torch.nn.Conv2d(2, 3, 3)
    ours = nn.Conv2d(2, 3, 3)
    ours.load_state_dict(theirs.state_dict())
    np.testing.assert_array_equal(ours.weight, theirs.weight.detach().numpy())


def test_load_state_dict_errors_and_non_strict():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.Linear(4, 2, rng=0))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    good = {k: np.ones_like(v) for k, v in before.items()}
    with pytest.raises(ValueError, match=r'Missing key\(s\) in state_dict: "1.bias"'):
        model.load_state_dict({k: v for k, v in good.items() if k != "1.bias"})
    with pytest.raises(ValueError, match=r'Unexpected key\(s\) in state_dict: "2.weight"'):
        model.load_state_dict({**good, "2.weight": np.ones(3)})
    with pytest.raises(ValueError, match="size mismatch for 1.weight"):
        model.load_state_dict({**good, "1.weight": np.ones((2, 5))}, strict=False)
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([("0.weight", np.ones(3))])
    for key, value in model.state_dict().items():  # failed loads changed nothing
        np.testing.assert_array_equal(value, before[key])
    partial = {"0.weight": np.ones((2, 1, 3, 3)), "extra": np.ones(1)}
    result = model.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["0.bias", "1.weight", "1.bias"]
    assert result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model[0].weight, 1.0)


def test_parameters_registration_and_bias_false():
    conv = nn.Conv2d(2, 4, 3, bias=False)
    assert conv.bias is None and list(conv.state_dict()) == ["weight"]
    assert [name for name, _ in conv.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="float32 or float64"):
        conv.weight = np.ones((4, 2, 3, 3), np.int64)
    conv.weight = np.zeros((4, 2, 3, 3), np.float32)
    assert conv(np.ones((1, 2, 5, 5), np.float32)).max() == 0.0
    model = nn.Sequential(conv, nn.ReLU(), nn.Sequential(nn.Linear(2, 2)))
    assert len(list(model.modules())) == 5 and len(list(model.parameters())) == 3
    assert len(model) == 3 and isinstance(model[1], nn.ReLU)
    assert list(model[1:].state_dict()) == ["2.0.weight", "2.0.bias"]  # names kept, as torch
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.ReLU(), np.ones(3))


def test_train_and_eval():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.RReLU(0.1, 0.3, rng=0))
    assert model.training and model[1].training  # torch's default after construction
    x = -np.ones((1, 1, 40, 40))
    slopes = model[1](x) / x  # training: a slope per element from U(0.1, 0.3)
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3 and slopes.std() > 0.03
    assert model.eval() is model and not model[1].training and not model[0].training
    np.testing.assert_allclose(model[1](x), x * 0.2)
    model.train()
    assert model[1].training
    with pytest.raises(TypeError, match="mode"):
        model.train("no")


def test_rrelu_training_is_seedable():
    a = nn.RReLU(rng=3)(-np.ones(100))
    b = nn.RReLU(rng=3)(-np.ones(100))
    np.testing.assert_array_equal(a, b)


def test_inplace_activations():
    x = np.array([-2.0, 3.0])
    for module, expected in ((nn.ReLU(inplace=True), [0.0, 3.0]),
                             (nn.LeakyReLU(0.5, inplace=True), [-1.0, 3.0])):
        data = x.copy()
        out = module(data)
        assert out is data
        np.testing.assert_array_equal(data, expected)
    kept = x.copy()
    nn.ReLU()(kept)
    np.testing.assert_array_equal(kept, x)
    with pytest.raises(ValueError, match="inplace=True"):
        nn.ReLU(inplace=True)([-1.0, 2.0])
    frozen = x.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        nn.ReLU(inplace=True)(frozen)


# --------------------------------------------------------------------------- validation

# (constructor, exception, message pattern, torch rejects it when built too)
INVALID = [
    (lambda m: m.Conv2d(3, 6, 3, groups=0), ValueError, "groups must be a positive", True),
    (lambda m: m.Conv2d(3, 6, 3, groups=2), ValueError, "in_channels must be divisible", True),
    (lambda m: m.Conv2d(4, 6, 3, groups=4), ValueError, "out_channels must be divisible", True),
    (lambda m: m.Conv2d(3, 6, 3, padding="foo"), ValueError, "padding", True),
    (lambda m: m.Conv2d(3, 6, 3, padding="same", stride=2), ValueError, "strided", True),
    (lambda m: m.Conv2d(3, 6, 3, padding_mode="bad"), ValueError, "padding_mode", True),
    (lambda m: m.ConvTranspose2d(3, 6, 3, padding_mode="reflect"), ValueError, "zeros", True),
    (lambda m: m.Conv2d(3, 6, 3, stride=0), ValueError, "stride", False),
    (lambda m: m.Conv2d(3, 6, 0), ValueError, "kernel_size", False),
    (lambda m: m.Conv2d(3, 6, (3, 3, 3)), ValueError, "kernel_size", False),
    (lambda m: m.Conv2d(3, 6, 3, dilation=-1), ValueError, "dilation", False),
    (lambda m: m.Conv2d(3.0, 6, 3), TypeError, "in_channels", True),
    (lambda m: m.Conv2d(3, 6, 3, padding=-1), ValueError, "padding", False),
    (lambda m: m.Conv1d(3, 6, 3, stride=(1, 2)), ValueError, "stride", False),
    (lambda m: m.ConvTranspose2d(3, 6, 3, stride=2, output_padding=2), ValueError,
     "output_padding", False),
    (lambda m: m.ConvTranspose2d(3, 6, 3, padding="same"), TypeError, "padding", False),
    (lambda m: m.Linear(-1, 3), ValueError, "in_features", True),
    (lambda m: m.Linear(2.5, 3), TypeError, "in_features", True),
    (lambda m: m.MaxPool2d(0), ValueError, "kernel_size", False),
    (lambda m: m.MaxPool2d(2, padding=2), ValueError, "half", False),
    (lambda m: m.MaxPool2d(2, stride=0), ValueError, "stride", False),
    (lambda m: m.AvgPool2d(2, divisor_override=0), ValueError, "divisor_override", False),
    (lambda m: m.MaxUnpool2d(0), ValueError, "kernel_size", False),
    (lambda m: m.PReLU(0), ValueError, "num_parameters", False),
    (lambda m: m.RReLU(0.5, 0.1), ValueError, "lower bound", False),
    (lambda m: m.LeakyReLU("x"), TypeError, "negative_slope", False),
    (lambda m: m.Flatten(1.5), TypeError, "start_dim", False),
]


@pytest.mark.parametrize("make, error, pattern, torch_rejects_at_init", INVALID)
def test_invalid_options_rejected_when_built(torch, make, error, pattern, torch_rejects_at_init):
    with pytest.raises(error, match=pattern):
        make(nn)
    if torch_rejects_at_init:
        with pytest.raises((ValueError, TypeError, RuntimeError)):
            make(torch.nn)


def test_flatten_matches_torch_and_rejects_bad_dims(torch, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for start, end in [(0, -1), (1, 1), (-2, 2), (2, 2)]:
        got = nn.Flatten(start, end)(x)
        assert got.shape == tuple(torch.nn.Flatten(start, end)(torch.from_numpy(x)).shape)
    for start, end in [(2, 1), (0, 3), (-4, -1)]:
        with pytest.raises((RuntimeError, IndexError)):
            torch.nn.Flatten(start, end)(torch.from_numpy(x))
        with pytest.raises(ValueError, match="Flatten"):
            nn.Flatten(start, end)(x)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_conv_modules_agree_with_torch_on_random_options(torch, data):
    """Random options, valid or not: both accept and agree, or both reject (we may reject
    when built what torch only rejects in forward)."""
    name = data.draw(st.sampled_from(["Conv2d", "ConvTranspose2d", "Conv1d"]))
    nsp = 1 if name.endswith("1d") else 2
    groups = data.draw(st.integers(1, 3))
    in_ch = groups * data.draw(st.integers(1, 2)) + data.draw(st.sampled_from([0, 0, 0, 1]))
    out_ch = groups * data.draw(st.integers(1, 2))
    kwargs = dict(stride=data.draw(st.integers(0, 3)), dilation=data.draw(st.integers(1, 2)),
                  padding=data.draw(st.integers(-1, 2)), groups=groups)
    if name.startswith("ConvTranspose"):
        kwargs["output_padding"] = data.draw(st.integers(0, 2))
    else:
        kwargs["padding_mode"] = data.draw(st.sampled_from(["zeros", "reflect", "circular"]))
        if kwargs["padding_mode"] != "zeros":
            # torch's modules crop for a negative padding in these modes (F.pad's negative
            # pads); numbaconv rejects negative padding in every mode, a known difference.
            kwargs["padding"] = abs(kwargs["padding"])
    kernel = data.draw(st.integers(1, 4))
    shape = (2, in_ch) + tuple(data.draw(st.integers(3, 8)) for _ in range(nsp))
    seed = data.draw(st.integers(0, 2**31))
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    try:
        theirs = getattr(torch.nn, name)(in_ch, out_ch, kernel, **kwargs)
        want = torch_output(torch, theirs, x)
    except (RuntimeError, ValueError, TypeError) as exc:
        torch_error = exc
    else:
        torch_error = None
    try:
        ours = getattr(nn, name)(in_ch, out_ch, kernel, **kwargs)
        if torch_error is None:
            ours.load_state_dict(from_torch(theirs))
        got = ours(x)
    except (ValueError, TypeError) as exc:
        # torch's float32 (oneDNN) transposed convolution returns an empty output where its
        # own size rule, its float64 path and numbaconv reject one ("output size ... is
        # too small"): that one difference is allowed.
        empty = torch_error is None and 0 in want.shape and "too small" in str(exc)
        assert torch_error is not None or empty, f"torch accepted what numbaconv rejected: {exc}"
        return
    assert torch_error is None, f"numbaconv accepted what torch rejected: {torch_error}"
    assert got.shape == want.shape
    assert relative_error(got, want) <= WINOGRAD_TOLERANCE["float32"]


# --------------------------------------------------------------------------- whole networks


def lenet5(lib):
    return lib.Sequential(
        lib.Conv2d(1, 6, 5, padding=2), lib.ReLU(), lib.MaxPool2d(2),
        lib.Conv2d(6, 16, 5), lib.ReLU(), lib.MaxPool2d(2), lib.Flatten(),
        lib.Linear(16 * 5 * 5, 120), lib.ReLU(), lib.Linear(120, 84), lib.Tanh(),
        lib.Linear(84, 10))


def small_vgg(lib):
    def block(cin, cout):
        return [lib.Conv2d(cin, cout, 3, padding=1), lib.ReLU(),
                lib.Conv2d(cout, cout, 3, padding=1), lib.ReLU(), lib.MaxPool2d(2)]

    return lib.Sequential(*block(3, 16), *block(16, 32), *block(32, 64),
                          lib.AvgPool2d(2), lib.Flatten(), lib.Linear(64 * 2 * 2, 128),
                          lib.LeakyReLU(0.1), lib.Linear(128, 10), lib.Sigmoid())


@pytest.mark.parametrize("build, shape", [(lenet5, (16, 1, 28, 28)), (small_vgg, (4, 3, 32, 32))],
                         ids=["lenet5", "small_vgg"])
def test_whole_network_matches_torch_with_copied_weights(torch, rng, build, shape):
    torch.manual_seed(0)
    theirs, ours = build(torch.nn).eval(), build(nn).eval()
    assert repr(ours) == repr(theirs)
    ours.load_state_dict(from_torch(theirs))
    x = rng.standard_normal(shape).astype(np.float32)
    got, want = ours(x), torch_output(torch, theirs, x)
    assert got.shape == want.shape == (shape[0], 10) and got.dtype == np.float32
    # the 3x3 layers may run Winograd under 'auto'
    assert relative_error(got, want) <= WINOGRAD_TOLERANCE["float32"]
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


def test_functional_namespace_is_the_top_level_api():
    from numbaconv.nn import functional as F

    for name in F.__all__:
        assert getattr(F, name) is getattr(numbaconv, name)
