"""numbaconv.nn.init against torch.nn.init and against the exact laws.

Gains, fans and bounds must equal torch's; deterministic fills (constant, eye, dirac) the
same values; random fills the same distribution, checked by moments and by a
Kolmogorov-Smirnov test against the exact law on large draws (seeded, so not flaky),
and torch's own draws against the same law, which shows that the law is torch's.
"""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

import numbaconv
from numbaconv import nn
from numbaconv.nn import init

NONLINEARITIES = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh", "relu",
                  "leaky_relu", "selu"]
SHAPES = [(5, 3), (4, 3, 2), (8, 4, 3, 3), (6, 2, 3, 4, 5), (1, 1), (7, 0, 3)]
KS_SIZE = 200_000
KS_MIN_P = 1e-3


def ks_p(values, law) -> float:
    return stats.kstest(np.asarray(values, np.float64).ravel(), law.cdf).pvalue


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("param", [None, 0.2, 1, 0, -0.5, 3.0])
def test_calculate_gain_matches_torch(torch, nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(
        nonlinearity, param)


@pytest.mark.parametrize("nonlinearity, param", [("softmax", None), ("ReLU", None),
                                                 ("leaky_relu", True), ("leaky_relu", "0.1")])
def test_calculate_gain_rejects_what_torch_rejects(torch, nonlinearity, param):
    with pytest.raises(ValueError) as theirs:
        torch.nn.init.calculate_gain(nonlinearity, param)
    with pytest.raises(ValueError) as ours:
        init.calculate_gain(nonlinearity, param)
    assert str(theirs.value) in str(ours.value)


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(torch, shape):
    theirs = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init._calculate_fan_in_and_fan_out(np.empty(shape)) == theirs


@pytest.mark.parametrize("shape", [(), (5,)])
@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                                  "kaiming_normal_"])
def test_fewer_than_two_dimensions_rejected_as_torch(torch, shape, name):
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        getattr(torch.nn.init, name)(torch.empty(shape))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        getattr(init, name)(np.empty(shape, np.float32))


# --------------------------------------------------------------------------- the laws

def _uniform(bound):
    return stats.uniform(-bound, 2 * bound)


def laws(shape):
    """(name, kwargs, exact law of every value) for the random fills of a weight of
    ``shape``; each bound/std written from the published formula, not from our code."""
    receptive = math.prod(shape[2:])
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    xavier = math.sqrt(2 / (fan_in + fan_out))
    relu, leaky = math.sqrt(2), math.sqrt(2 / (1 + 0.2 ** 2))
    return [
        ("uniform_", dict(a=-0.3, b=0.7), stats.uniform(-0.3, 1.0)),
        ("normal_", dict(mean=0.5, std=2.0), stats.norm(0.5, 2.0)),
        ("trunc_normal_", {}, stats.truncnorm(-2, 2)),
        ("trunc_normal_", dict(mean=0.1, std=0.02, a=0.09, b=0.2),
         stats.truncnorm(-0.5, 5, loc=0.1, scale=0.02)),
        ("trunc_normal_", dict(mean=0.0, std=1.0, a=3.0, b=4.0),  # a far tail
         stats.truncnorm(3, 4)),
        ("xavier_uniform_", {}, _uniform(math.sqrt(3) * xavier)),
        ("xavier_uniform_", dict(gain=5 / 3), _uniform(math.sqrt(3) * 5 / 3 * xavier)),
        ("xavier_normal_", dict(gain=2.0), stats.norm(0, 2 * xavier)),
        ("kaiming_uniform_", {}, _uniform(math.sqrt(3) * math.sqrt(2 / 1.0) / math.sqrt(fan_in))),
        ("kaiming_uniform_", dict(a=0.2, mode="fan_out"),
         _uniform(math.sqrt(3) * leaky / math.sqrt(fan_out))),
        ("kaiming_uniform_", dict(a=math.sqrt(5)), _uniform(1 / math.sqrt(fan_in))),
        ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu"),
         stats.norm(0, relu / math.sqrt(fan_out))),
        ("kaiming_normal_", dict(nonlinearity="tanh"), stats.norm(0, 5 / 3 / math.sqrt(fan_in))),
    ]


KS_SHAPE = (400, 50, 5, 2)  # 200,000 values; fan_in 500, fan_out 4000
LAW_CASES = [(name, kwargs, law) for name, kwargs, law in laws(KS_SHAPE)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs, law", LAW_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(LAW_CASES)])
def test_random_fills_follow_the_exact_law(name, kwargs, law, dtype):
    w = np.empty(KS_SHAPE, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trunc_normal_'s far-tail warning: asserted below
        out = getattr(init, name)(w, **kwargs, generator=3)
    assert out is w and w.dtype == dtype
    assert ks_p(w, law) > KS_MIN_P
    assert abs(w.mean() - law.mean()) < 5 * law.std() / math.sqrt(w.size)
    assert abs(w.std() - law.std()) < 0.01 * law.std()
    low, high = law.support()
    assert low <= w.min() and w.max() <= high


@pytest.mark.parametrize("name, kwargs, law", LAW_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(LAW_CASES)])
def test_torch_draws_follow_the_same_law(torch, name, kwargs, law):
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(torch.nn.init, name)(torch.empty(KS_SHAPE, dtype=torch.float64),
                                              **kwargs)
    assert ks_p(theirs.numpy(), law) > KS_MIN_P


def test_trunc_normal_warns_as_torch_when_mean_is_far_outside(torch):
    with pytest.warns(UserWarning, match="more than 2 std"):
        torch.nn.init.trunc_normal_(torch.empty(10), mean=0.0, a=3.0, b=4.0)
    with pytest.warns(UserWarning, match="more than 2 std"):
        init.trunc_normal_(np.empty(10), mean=0.0, a=3.0, b=4.0)


def test_trunc_normal_float32_stays_inside_bounds_that_round():
    w = init.trunc_normal_(np.empty(100_000, np.float32), mean=0.1, std=1e-3, a=0.1, b=0.1003,
                           generator=0)
    assert 0.1 <= w.min() and w.max() <= 0.1003


# --------------------------------------------------------------------------- deterministic fills

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_constant_ones_zeros_eye_match_torch(torch, dtype):
    tdtype = getattr(torch, np.dtype(dtype).name)
    for shape in [(3, 4), (5, 2), (0, 3)]:
        np.testing.assert_array_equal(init.eye_(np.empty(shape, dtype)),
                                      torch.nn.init.eye_(torch.empty(shape, dtype=tdtype)).numpy())
    np.testing.assert_array_equal(init.constant_(np.empty((2, 3), dtype), 3),
                                  torch.nn.init.constant_(torch.empty(2, 3, dtype=tdtype), 3))
    np.testing.assert_array_equal(init.ones_(np.empty(4, dtype)), np.ones(4, dtype))
    np.testing.assert_array_equal(init.zeros_(np.full(4, 7, dtype)), np.zeros(4, dtype))


@pytest.mark.parametrize("shape, groups", [((4, 4, 3, 3), 1), ((6, 2, 3, 3), 3),
                                           ((8, 3, 5, 4), 2), ((2, 5, 3), 1), ((6, 4, 3), 2),
                                           ((4, 2, 3, 3, 3), 2), ((3, 6, 1, 1), 1)])
def test_dirac_matches_torch(torch, shape, groups):
    theirs = torch.nn.init.dirac_(torch.empty(shape), groups).numpy()
    np.testing.assert_array_equal(init.dirac_(np.empty(shape, np.float32), groups), theirs)


@pytest.mark.parametrize("channels, groups", [(4, 1), (6, 3), (8, 8)])
def test_dirac_preserves_the_input_under_convolution(rng, channels, groups):
    x = rng.standard_normal((2, channels, 7, 6)).astype(np.float32)
    w = init.dirac_(np.empty((channels, channels // groups, 3, 3), np.float32), groups)
    np.testing.assert_array_equal(numbaconv.conv2d(x, w, padding=1, groups=groups), x)
    w1 = init.dirac_(np.empty((channels, channels // groups, 5), np.float32), groups)
    np.testing.assert_array_equal(numbaconv.conv1d(x[:, :, 0], w1, padding=2, groups=groups),
                                  x[:, :, 0])


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (9, 4), (6, 3, 2, 2), (4, 2, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_is_orthonormal(torch, shape, gain):
    for w in (init.orthogonal_(np.empty(shape), gain=gain, generator=1),
              torch.nn.init.orthogonal_(torch.empty(shape, dtype=torch.float64), gain).numpy()):
        flat = w.reshape(shape[0], -1) / gain
        small = min(flat.shape)
        gram = flat @ flat.T if flat.shape[0] == small else flat.T @ flat
        np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def test_orthogonal_is_haar_distributed():
    # Without the sign correction, Q's diagonal from a QR factorisation is biased; with it,
    # each entry of a Haar orthogonal n x n matrix has mean 0 and variance 1/n.
    n = 4
    draws = np.stack([init.orthogonal_(np.empty((n, n)), generator=g) for g in range(4000)])
    assert np.abs(draws.mean(axis=0)).max() < 0.03
    np.testing.assert_allclose(draws.var(axis=0), 1 / n, rtol=0.1)


@pytest.mark.parametrize("rows, cols, sparsity", [(10, 4, 0.3), (7, 20, 0.5), (5, 3, 0.0),
                                                  (6, 2, 1.0)])
def test_sparse_zeros_per_column_as_torch(torch, rows, cols, sparsity):
    zeros = math.ceil(sparsity * rows)
    ours = init.sparse_(np.empty((rows, cols)), sparsity, std=0.5, generator=0)
    theirs = torch.nn.init.sparse_(torch.empty(rows, cols), sparsity, std=0.5).numpy()
    for w in (ours, theirs):
        assert ((w == 0).sum(axis=0) == zeros).all()
    big = init.sparse_(np.empty((1000, 200)), 0.25, std=0.5, generator=0)
    assert ks_p(big[big != 0], stats.norm(0, 0.5)) > KS_MIN_P


# --------------------------------------------------------------------------- seeds, inputs, errors

RANDOM_FILLS = ["uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
                "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]


@pytest.mark.parametrize("name", RANDOM_FILLS + ["sparse_"])
def test_same_seed_same_values(name):
    args = (0.2,) if name == "sparse_" else ()
    fill = getattr(init, name)
    a = fill(np.empty((6, 5), np.float32), *args, generator=11)
    b = fill(np.empty((6, 5), np.float32), *args, generator=np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    numbaconv.manual_seed(4)
    c = fill(np.empty((6, 5), np.float32), *args)
    d = fill(np.empty((6, 5), np.float32), *args)  # the default generator moved on
    numbaconv.manual_seed(4)
    np.testing.assert_array_equal(fill(np.empty((6, 5), np.float32), *args), c)
    assert not np.array_equal(c, d)


def test_manual_seed_also_seeds_module_initialisation():
    numbaconv.manual_seed(123)
    first = nn.Conv2d(3, 4, 3).weight
    numbaconv.manual_seed(123)
    np.testing.assert_array_equal(nn.Conv2d(3, 4, 3).weight, first)
    assert numbaconv.manual_seed(-1) is numbaconv.random.default_generator()  # as torch: wraps
    with pytest.raises(TypeError, match="seed"):
        numbaconv.manual_seed(1.5)


def test_the_seed_example_works_on_weight_data():
    # The seed material's line, unchanged: nn.init.xavier_normal_(conv_layer.weight.data)
    conv_layer = nn.Conv2d(16, 33, 3, rng=0)
    before = conv_layer.weight.copy()
    nn.init.xavier_normal_(conv_layer.weight.data)
    assert not np.array_equal(conv_layer.weight, before)
    assert abs(conv_layer.weight.std() - math.sqrt(2 / (16 * 9 + 33 * 9))) < 0.005


@pytest.mark.parametrize("name", RANDOM_FILLS + ["constant_", "ones_", "zeros_", "eye_", "dirac_"])
def test_read_only_and_non_arrays_refused(name):
    fill = getattr(init, name)
    args = (1.0,) if name == "constant_" else ()
    shape = (4, 4, 3) if name == "dirac_" else (4, 4)
    frozen = np.zeros(shape, np.float32)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        fill(frozen, *args)
    with pytest.raises(TypeError, match="NumPy array"):
        fill(np.zeros(shape).tolist(), *args)


@pytest.mark.parametrize("name", RANDOM_FILLS)
def test_random_fills_need_a_float_array(name):
    with pytest.raises(TypeError, match="float"):
        getattr(init, name)(np.zeros((3, 3), np.int32))


@pytest.mark.parametrize("call, error, pattern", [
    (lambda lib, t: lib.eye_(t((2, 3, 4))), ValueError, "Only tensors with 2 dimensions"),
    (lambda lib, t: lib.dirac_(t((2, 3))), ValueError, "Only tensors with 3, 4, or 5"),
    (lambda lib, t: lib.dirac_(t((3, 2, 3)), 2), ValueError, "dim 0 must be divisible by groups"),
    (lambda lib, t: lib.orthogonal_(t((5,))), ValueError, "2 or more dimensions"),
    (lambda lib, t: lib.sparse_(t((2, 3, 4)), 0.1), ValueError, "Only tensors with 2 dimensions"),
    (lambda lib, t: lib.kaiming_uniform_(t((2, 3)), mode="fan_avg"), ValueError, "fan_avg"),
    (lambda lib, t: lib.kaiming_normal_(t((2, 3)), nonlinearity="softmax"), ValueError,
     "Unsupported nonlinearity"),
])
def test_shape_and_option_errors_match_torch(torch, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(torch.nn.init, lambda shape: torch.empty(shape))
    with pytest.raises(error, match=pattern):
        call(init, lambda shape: np.empty(shape, np.float32))


@pytest.mark.parametrize("call, pattern", [
    (lambda t: init.uniform_(t, 1.0, 0.0), "a <= b"),
    (lambda t: init.normal_(t, std=-1.0), "std"),
    (lambda t: init.trunc_normal_(t, std=0.0), "std"),
    (lambda t: init.trunc_normal_(t, a=1.0, b=-1.0), "a < b"),
    (lambda t: init.xavier_uniform_(np.empty((0, 0))), "fan_in \\+ fan_out"),
    (lambda t: init.dirac_(np.empty((2, 2, 3)), 0), "groups"),
])
def test_invalid_arguments_rejected(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(np.empty((3, 3)))
    with pytest.raises(TypeError, match="generator"):
        init.normal_(np.empty(3), generator="seed")
    with pytest.raises(TypeError, match="mean"):
        init.normal_(np.empty(3), mean="0")


def test_kaiming_on_zero_elements_warns_and_does_nothing(torch):
    with pytest.warns(UserWarning, match="zero-element"):
        torch.nn.init.kaiming_uniform_(torch.empty(0, 3))
    for fill in (init.kaiming_uniform_, init.kaiming_normal_):
        with pytest.warns(UserWarning, match="zero-element"):
            assert fill(np.empty((0, 3))).shape == (0, 3)


def test_every_public_function_of_torch_nn_init_exists(torch):
    assert set(torch.nn.init.__all__) <= set(init.__all__)
    for name in torch.nn.init.__all__:
        assert callable(getattr(init, name)), name


@pytest.mark.parametrize("old", ["uniform", "normal", "xavier_uniform", "xavier_normal",
                                 "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse"])
def test_deprecated_names_warn_and_fill_as_torch(torch, old):
    args = (0.5,) if old == "sparse" else ()
    with pytest.warns(FutureWarning, match=f"nn.init.{old}` is now deprecated"):
        getattr(torch.nn.init, old)(torch.empty(4, 3), *args)
    with pytest.warns(FutureWarning, match=f"nn.init.{old}` is now deprecated"):
        a = getattr(init, old)(np.empty((4, 3)), *args, generator=2)
    np.testing.assert_array_equal(a, getattr(init, old + "_")(np.empty((4, 3)), *args,
                                                              generator=2))
    with pytest.warns(FutureWarning):
        assert (init.constant(np.empty(2), 3.0) == 3).all()
        assert (init.eye(np.empty((2, 2))) == np.eye(2)).all()
        assert init.dirac(np.empty((2, 2, 3)))[0, 0, 1] == 1
