"""linear and the activations against torch (and NumPy formulas), valid and invalid."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv

SPECIAL = np.array([-np.inf, -3.5, -0.0, 0.0, 1e-40, 2.0, np.inf, np.nan])


def torch_fn(torch, name, *arrays, **kwargs):
    t = lambda a: torch.from_numpy(np.array(a)) if isinstance(a, np.ndarray) else a  # 0-d stays 0-d
    try:
        return getattr(torch.nn.functional, name)(*[t(a) for a in arrays], **kwargs).numpy()
    except Exception as exc:
        return exc


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs, formula", [
    ("relu", {}, lambda x: np.where(np.isnan(x) | (x > 0), x, 0.0)),
    ("sigmoid", {}, lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", {}, np.tanh),
    ("leaky_relu", dict(negative_slope=0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    ("rrelu", dict(lower=0.1, upper=0.3), lambda x: np.where(x > 0, x, 0.2 * x)),
])
def test_elementwise(torch, rng, dtype, name, kwargs, formula):
    x = np.concatenate([SPECIAL, rng.standard_normal(40) * 10]).astype(dtype).reshape(2, 3, 8)
    original = x.copy()
    out = getattr(numbaconv, name)(x, **kwargs)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_allclose(out, torch_fn(torch, name, x, **kwargs), rtol=1e-6, atol=0)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(out, formula(x.astype(np.float64)), rtol=1e-6, atol=1e-30)
    np.testing.assert_array_equal(x, original)


def test_rrelu_training_draws_slopes_in_range(rng):
    x = -np.ones(10_000)
    out = numbaconv.rrelu(x, 0.1, 0.3, training=True, rng=np.random.default_rng(0))
    slopes = -out
    assert 0.1 <= slopes.min() and slopes.max() <= 0.3 and abs(slopes.mean() - 0.2) < 0.005
    again = numbaconv.rrelu(x, 0.1, 0.3, training=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)  # seedable
    positive = np.ones(5)
    np.testing.assert_array_equal(numbaconv.rrelu(positive, training=True), positive)
    with pytest.raises(ValueError, match="lower bound"):
        numbaconv.rrelu(x, 0.5, 0.1)


@pytest.mark.parametrize("x_shape, w_shape", [((2, 5, 3), (5,)), ((2, 5), (1,)), ((5,), (1,)),
                                              ((2, 5, 3), ()), ((), (1,))])
def test_prelu(torch, rng, x_shape, w_shape):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    np.testing.assert_allclose(numbaconv.prelu(x, w), torch_fn(torch, "prelu", x, w), rtol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape", [((5,), (5,)), ((2, 5, 3), (3,)),
                                              ((2, 5, 3), (5, 1))])
def test_prelu_invalid(torch, x_shape, w_shape):
    x, w = np.ones(x_shape), np.ones(w_shape)
    with pytest.raises(ValueError):
        numbaconv.prelu(x, w)
    assert isinstance(torch_fn(torch, "prelu", x, w), Exception)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_linear_agrees_with_torch(torch, data):
    draw = data.draw
    lead = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    in_features = draw(st.integers(1, 5))
    x_last = in_features if draw(st.integers(0, 9)) else in_features + 1
    w_shape = draw(st.sampled_from([(draw(st.integers(1, 4)), in_features), (in_features,), (),
                                    (2, in_features, 1)]))
    out_features = w_shape[0] if len(w_shape) == 2 else None
    b_shape = draw(st.sampled_from([None, (), (1,), (out_features or 1,), (3,)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x_shape = lead + (x_last,) if draw(st.integers(0, 9)) else ()
    x, w = np.asarray(rng.standard_normal(x_shape)), np.asarray(rng.standard_normal(w_shape))
    b = None if b_shape is None else np.asarray(rng.standard_normal(b_shape))
    expected = torch_fn(torch, "linear", x, w, b)
    if isinstance(expected, Exception):
        with pytest.raises((ValueError, TypeError)):
            numbaconv.linear(x, w, b)
        return
    out = numbaconv.linear(x, w, b)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_linear_float32_and_reference(rng):
    x = rng.standard_normal((4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((3, 6)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    out = numbaconv.linear(x, w, b)
    expected = np.einsum("abi,oi->abo", x.astype(np.float64), w.astype(np.float64)) + b
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_non_float_input_is_rejected():
    with pytest.raises(TypeError, match="float32 or float64"):
        numbaconv.relu(np.arange(3))


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "leaky_relu", "rrelu"])
def test_zero_dimensional_input_gives_a_zero_dimensional_array(name):
    # torch returns a 0-d tensor; a NumPy ufunc on a 0-d array returns a scalar instead.
    x = np.array(-1.5, np.float32)
    out = getattr(numbaconv, name)(x)
    assert isinstance(out, np.ndarray) and out.shape == () and out.dtype == np.float32
    np.testing.assert_allclose(out, getattr(numbaconv, name)(x.reshape(1))[0])
    assert isinstance(numbaconv.linear(np.ones(3), np.ones(3)), np.ndarray)


class FakeDeviceArray:
    __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False),
                                "version": 3}


@pytest.mark.parametrize("call", [
    lambda a: numbaconv.l1_loss(a, a), lambda a: numbaconv.binary_cross_entropy(a, a),
    lambda a: numbaconv.mse_loss(a, a), lambda a: numbaconv.smooth_l1_loss(a, a),
    lambda a: numbaconv.binary_cross_entropy_with_logits(a, a),
    lambda a: numbaconv.cross_entropy(a, a),
])
def test_gpu_arrays_on_cpu_only_functions_say_so(call):
    with pytest.raises(NotImplementedError, match=r"CPU only so far.*GPU array.*copy_to_host"):
        call(FakeDeviceArray())


@pytest.mark.parametrize("call", [
    lambda a: numbaconv.relu(a), lambda a: numbaconv.sigmoid(a),
    lambda a: numbaconv.linear(a, a), lambda a: numbaconv.max_pool1d(a, 2),
    lambda a: numbaconv.avg_pool1d(a, 2), lambda a: numbaconv.softmax(a, dim=1),
    lambda a: numbaconv.layer_norm(a, (3,)), lambda a: numbaconv.group_norm(a, 1),
])
def test_gpu_arrays_go_to_the_gpu(call):
    """A device array is routed to numbaconv.gpu_arrays; on a machine without a GPU (or
    without numba-cuda) the call says what is missing."""
    with pytest.raises(numbaconv.CudaUnavailable):
        call(FakeDeviceArray())


def test_host_and_gpu_arrays_mixed_are_refused():
    with pytest.raises(ValueError, match="same device.*weight is on the host"):
        numbaconv.linear(FakeDeviceArray(), np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="same device.*input is on the host"):
        numbaconv.linear(np.ones((2, 3), np.float32), FakeDeviceArray())


@pytest.mark.parametrize("bad, error, message", [
    (None, TypeError, "got None"),
    ([[1.0, 2.0], [3.0]], ValueError, "rectangular array of numbers, got a list"),
    ({"a": 1.0}, TypeError, "got dict"),
    (object(), TypeError, "got object"),
    ("text", TypeError, "float32 or float64"),
])
@pytest.mark.parametrize("call", [
    lambda a: numbaconv.relu(a), lambda a: numbaconv.linear(a, np.ones((2, 2))),
    lambda a: numbaconv.conv2d(a, np.ones((1, 1, 1, 1))), lambda a: numbaconv.max_pool2d(a, 2),
])
def test_inputs_that_are_not_numeric_arrays_are_named(call, bad, error, message):
    with pytest.raises(error, match=f"input must be .*{message}"):
        call(bad)


@pytest.mark.parametrize("x_shape, w_shape", [((3, 50), (40, 50)), ((64, 7), (5, 7)),
                                              ((2, 5, 33), (70, 33)), ((1, 9), (4, 9)),
                                              ((1, 33), (13, 33)), ((1, 1), (1000, 1)),
                                              ((8, 33), (13, 33)), ((2, 4, 65), (9, 65)),
                                              ((70, 45), (37, 45)), ((40, 70), (100, 70)),
                                              ((100, 300), (20, 300)), ((20, 300), (90, 300)),
                                              ((3, 4), (0, 4)), ((3, 0), (5, 0)),
                                              ((0, 4), (2, 4)), ((2, 3, 0), (4, 0))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_both_product_orientations_and_blas(torch, rng, x_shape, w_shape, dtype):
    # Rows >= OWN_PRODUCT_MIN_ROWS run numbaconv's own product, packing the rows (fewer
    # than OWN_PRODUCT_PACKED_ROWS) or the weights; fewer rows run dot products in runs
    # of four outputs per thread (and what is left of a run one by one); a 1-D weight, BLAS.
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    out = numbaconv.linear(x, w, b)
    assert out.dtype == dtype and out.flags.c_contiguous
    expected = np.einsum("...i,oi->...o", x.astype(np.float64), w.astype(np.float64)) + b
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(out, torch_fn(torch, "linear", x, w, b), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (33, 65), (64, 32), (3, 100), (8, 128),
                                   (9, 129), (16, 300)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_transpose_of_any_shape_and_layout(rng, shape, dtype):
    # cpu.layout.transposed: strips of 8 rows by 128 columns, ragged at both edges; views
    # are copied first
    from numbaconv.cpu.layout import transposed

    a = rng.standard_normal(shape).astype(dtype)
    for view in (a, a[:, ::2], a.T):
        before = view.copy()
        out = transposed(view)
        assert out.flags.c_contiguous and out.dtype == dtype
        np.testing.assert_array_equal(out, view.T)
        np.testing.assert_array_equal(view, before)


@pytest.mark.parametrize("shape", [(3, 37, 61), (2, 8, 128), (4, 17, 260), (1, 1, 5)])
def test_batched_transpose(rng, shape):
    """cpu.layout.transpose_into: every matrix of a batch in one launch."""
    from numbaconv.cpu.layout import transpose_into

    a = rng.standard_normal(shape).astype(np.float32)
    out = np.empty((shape[0], shape[2], shape[1]), np.float32)
    transpose_into(a, out)
    np.testing.assert_array_equal(out, a.transpose(0, 2, 1))


@pytest.mark.parametrize("size", [1, 1023, 1025, 40_000, 70_001])  # blocks, chunks, ragged
def test_float32_sigmoid_and_silu_kernel_across_the_range(torch, size):
    """The vectorised float32 exp behind sigmoid and silu (elementwise.sigmoid_or_silu):
    within 3e-7 relative of float64 where the result is normal, right to the subnormals
    (sigmoid(-100) is 3.7e-44), saturating and propagating as torch; views are read
    as views."""
    from scipy import special

    rng = np.random.default_rng(size)
    x = np.concatenate([rng.uniform(-110, 110, size), SPECIAL, [88.7, -88.7, -103.9, -104.1,
                                                               -87.5, 20.0, -20.0]])
    x = x.astype(np.float32)
    expected = special.expit(x.astype(np.float64))
    for out in (numbaconv.sigmoid(x), numbaconv.sigmoid(np.stack([x, x])[:, ::1][0])):
        normal = expected >= np.finfo(np.float32).tiny
        np.testing.assert_allclose(out[normal], expected[normal], rtol=3e-7)
        np.testing.assert_allclose(out[~normal], expected[~normal], rtol=0, atol=2e-45)
    # torch's float32 exp flushes results below the normal range to zero
    tiny = np.finfo(np.float32).tiny
    theirs = torch.sigmoid(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(numbaconv.sigmoid(x), theirs, rtol=5e-7, atol=tiny)
    silu = numbaconv.silu(x)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(silu, x * expected, rtol=3e-7, atol=2e-43)  # |x| ulp
    theirs = torch.nn.functional.silu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(silu, theirs, rtol=5e-7, atol=110 * tiny)
    strided = x[::3]
    np.testing.assert_array_equal(numbaconv.sigmoid(strided), numbaconv.sigmoid(strided.copy()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("contiguous", [True, False])
def test_relu_kernel_and_its_gradient_agree_with_torch(torch, rng, dtype, contiguous):
    """From RELU_KERNEL_MIN_VALUES values relu and its gradient run as Numba passes: NaN and
    -0.0 kept as torch keeps them, a strided input, and torch's threshold_backward (the
    gradient where the output is at most 0 is 0, even a NaN or infinite one; a NaN output
    passes it on)."""
    import autograd

    from numbaconv.activations import RELU_KERNEL_MIN_VALUES

    n = RELU_KERNEL_MIN_VALUES + 7
    x = rng.standard_normal(2 * n).astype(dtype)
    x[:4] = [np.nan, -0.0, np.inf, -np.inf]
    x = x[::2] if not contiguous else np.ascontiguousarray(x[::2])
    out = numbaconv.relu(x)
    expected = torch.relu(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    np.testing.assert_array_equal(out, expected)
    assert np.array_equal(np.signbit(out), np.signbit(expected))
    g = rng.standard_normal(n).astype(dtype)
    g[1:6] = [np.nan, np.inf, np.nan, 1.0, np.nan]
    got = autograd.grad(lambda a: (numbaconv.relu(a) * g).sum())(x)
    tx = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_()
    (torch.relu(tx) * torch.from_numpy(g)).sum().backward()
    np.testing.assert_array_equal(got, tx.grad.numpy())
