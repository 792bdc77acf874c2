"""Pooling and unpooling against the window-by-window reference and torch."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import numbaconv
import reference


def pair(v):
    if isinstance(v, (tuple, list)):
        return tuple(v) * (2 if len(v) == 1 else 1)
    return (v, v)


def torch_call(torch, name, x, *args, **kwargs):
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
    try:
        out = getattr(torch.nn.functional, name)(t(x), *[t(a) for a in args], **kwargs)
    except Exception as exc:
        return exc
    return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()


def as_2d(op, x, kernel, stride, padding, dilation=1):
    """1-D arguments in the reference's 2-D form (height 1)."""
    if op.endswith("1d"):
        one = lambda v, fill: (fill, v[0] if isinstance(v, (tuple, list)) else v)
        stride = kernel if stride is None else stride
        return (x[..., None, :], one(kernel, 1), one(stride, 1), one(padding, 0),
                one(dilation, 1))
    stride = kernel if stride is None else stride
    return x, pair(kernel), pair(stride), pair(padding), pair(dilation)


def batched(x, nsp):
    return x if x.ndim == nsp + 2 else x[None]


POOL_CASES = [
    dict(shape=(2, 3, 7, 8), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(shape=(1, 2, 9, 6), kernel_size=(2, 3), stride=(3, 1), padding=(1, 0)),
    dict(shape=(2, 5, 5), kernel_size=2),  # unbatched, stride defaults to the kernel
    dict(shape=(1, 1, 5, 5), kernel_size=2, stride=2, padding=1, ceil_mode=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_cases(torch, rng, dtype, case):
    case = dict(case)
    x = rng.standard_normal(case.pop("shape")).astype(dtype)
    x.flat[3] = np.nan  # NaN wins its windows
    original = x.copy()
    out, idx = numbaconv.max_pool2d(x, **case, return_indices=True)
    expected, expected_idx = torch_call(torch, "max_pool2d", x, **case, return_indices=True)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    assert idx.dtype == np.int64 and out.dtype == dtype
    xr, k, s, p, d = as_2d("max_pool2d", batched(x, 2), case["kernel_size"],
                           case.get("stride"), case.get("padding", 0))
    ref, ref_idx = reference.max_pool2d(xr, k, s, p, d, case.get("ceil_mode", False))
    np.testing.assert_array_equal(batched(out, 2), ref)
    np.testing.assert_array_equal(batched(idx, 2), ref_idx)
    np.testing.assert_array_equal(x, original)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool2d_cases(torch, rng, case, count_include_pad):
    case = dict(case)
    x = rng.standard_normal(case.pop("shape")).astype(np.float32)
    out = numbaconv.avg_pool2d(x, **case, count_include_pad=count_include_pad)
    expected = torch_call(torch, "avg_pool2d", x, **case, count_include_pad=count_include_pad)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    xr, k, s, p, _ = as_2d("avg_pool2d", batched(x, 2), case["kernel_size"], case.get("stride"),
                           case.get("padding", 0))
    ref = reference.avg_pool2d(xr, k, s, p, case.get("ceil_mode", False), count_include_pad)
    np.testing.assert_allclose(batched(out, 2), ref, rtol=1e-5, atol=1e-6)


def test_avg_pool2d_divisor_override(torch, rng):
    x = rng.standard_normal((1, 2, 6, 6))
    out = numbaconv.avg_pool2d(x, 3, padding=1, divisor_override=-4)
    np.testing.assert_allclose(out, torch_call(torch, "avg_pool2d", x, 3, padding=1,
                                               divisor_override=-4), rtol=1e-12)


def test_nonfinite_values(torch):
    x = np.array([[[-np.inf, -np.inf, 1.0, np.nan, np.inf, 2.0]]])
    out, idx = numbaconv.max_pool1d(x, 2, return_indices=True)
    expected, expected_idx = torch_call(torch, "max_pool1d", x, 2, return_indices=True)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(numbaconv.avg_pool1d(x, 2), torch_call(torch, "avg_pool1d", x, 2))


def test_max_unpool2d_round_trip(torch, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    y, idx = numbaconv.max_pool2d(x, 2, stride=2, return_indices=True)
    for output_size in (None, (7, 8), (2, 3, 7, 9)):
        out = numbaconv.max_unpool2d(y, idx, 2, output_size=output_size)
        expected = torch_call(torch, "max_unpool2d", y, idx, 2, output_size=output_size)
        np.testing.assert_array_equal(out, expected)
    unbatched = numbaconv.max_unpool2d(y[0], idx[0], 2)
    np.testing.assert_array_equal(unbatched, numbaconv.max_unpool2d(y, idx, 2)[0])


@pytest.mark.parametrize("kwargs, error", [
    (dict(indices_offset=1000), ValueError),  # outside the output plane
    (dict(output_size=(9, 9)), ValueError),  # more than a stride from the default
    (dict(indices_dtype=np.float64), TypeError),
    (dict(indices_cut=True), ValueError),  # indices of another shape
])
def test_max_unpool2d_invalid(torch, rng, kwargs, error):
    y, idx = numbaconv.max_pool2d(rng.standard_normal((1, 2, 4, 4)), 2, return_indices=True)
    idx = idx + kwargs.get("indices_offset", 0)
    idx = idx.astype(kwargs.get("indices_dtype", np.int64))
    if kwargs.get("indices_cut"):
        idx = idx[:, :, :1]
    with pytest.raises(error):
        numbaconv.max_unpool2d(y, idx, 2, output_size=kwargs.get("output_size"))
    assert isinstance(torch_call(torch, "max_unpool2d", y, idx, 2,
                                 output_size=kwargs.get("output_size")), Exception)


def _ints(draw, lo, hi, nsp):
    return draw(st.one_of(st.integers(lo, hi), st.tuples(*[st.integers(lo, hi)] * nsp)))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_pooling_agrees_with_torch(torch, data):
    """Random arguments, valid or not: accepted exactly when torch accepts them, and then
    the same values (and indices), and the reference's."""
    draw = data.draw
    op = draw(st.sampled_from(["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d"]))
    nsp = 1 if op.endswith("1d") else 2
    batched_input = draw(st.booleans())
    shape = ((draw(st.integers(0, 2)),) if batched_input else ()) + (draw(st.integers(0, 3)),) \
        + tuple(draw(st.integers(1, 7)) for _ in range(nsp))
    kwargs = dict(kernel_size=_ints(draw, 0, 4, nsp), padding=_ints(draw, 0, 2, nsp),
                  ceil_mode=draw(st.booleans()))
    if draw(st.booleans()):
        kwargs["stride"] = _ints(draw, 0, 3, nsp)
    if op.startswith("max"):
        kwargs["dilation"] = _ints(draw, 1, 2, nsp)
        kwargs["return_indices"] = draw(st.booleans())
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
        if op == "avg_pool2d" and draw(st.booleans()):
            kwargs["divisor_override"] = draw(st.integers(-3, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.standard_normal(shape)
    expected = torch_call(torch, op, x, **kwargs)
    if isinstance(expected, Exception):
        with pytest.raises((ValueError, TypeError)):
            getattr(numbaconv, op)(x, **kwargs)
        return
    out = getattr(numbaconv, op)(x, **kwargs)
    if op.startswith("max") and kwargs["return_indices"]:
        np.testing.assert_array_equal(out[0], expected[0])
        np.testing.assert_array_equal(out[1], expected[1])
    elif op.startswith("max"):
        np.testing.assert_array_equal(out, expected)
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel_size, stride", [(2, 2), (3, 2), (3, 1), (2, 1), (3, 3), ((2, 3), 2)])
@pytest.mark.parametrize("padding, ceil_mode", [(0, False), (1, True), (1, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_kernels_on_wide_rows(torch, rng, kernel_size, stride, padding, ceil_mode, dtype):
    """max_pool2d without indices and avg_pool2d run a row at a time (unrolled loops for
    2x2 and 3x3 windows at stride 1 and 2, per-tap passes otherwise, the row's ends
    window by window): rows of 37 and 40 values, NaN and infinities among them."""
    if padding * 2 > min(np.broadcast_to(kernel_size, 2)):
        pytest.skip("torch allows padding of at most half the kernel")
    x = rng.standard_normal((2, 3, 11, 37)).astype(dtype)
    x[0, 0, 4, 5], x[0, 1, 0, 36], x[1, 2, 7, 0] = np.nan, np.inf, -np.inf
    kwargs = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode)
    out = numbaconv.max_pool2d(x, **kwargs)
    np.testing.assert_array_equal(out, torch_call(torch, "max_pool2d", x, **kwargs))
    np.testing.assert_array_equal(out, numbaconv.max_pool2d(x, **kwargs, return_indices=True)[0])
    for count_include_pad in (True, False):
        out = numbaconv.avg_pool2d(x, **kwargs, count_include_pad=count_include_pad)
        expected = torch_call(torch, "avg_pool2d", x, **kwargs,
                              count_include_pad=count_include_pad)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    wide = rng.standard_normal((1, 2, 6, 40)).astype(dtype)  # whole vectors and a remainder
    xr, k, s, p, d = as_2d("max_pool2d", wide, kernel_size, stride, padding)
    np.testing.assert_array_equal(numbaconv.max_pool2d(wide, **kwargs),
                                  reference.max_pool2d(xr, k, s, p, d, ceil_mode)[0])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_stride_one_max_pool_separable(torch, data):
    """max_pool2d at stride 1 without indices (the separable kernel over flat planes):
    any window, dilation, padding and ceil_mode, planes narrower and wider than a vector,
    NaN and infinities: torch's values, and those of the indexed kernel."""
    draw = data.draw
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    height, width = draw(st.integers(1, 23)), draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.standard_normal((2, 3, height, width)).astype(dtype)
    for value in (np.nan, np.inf, -np.inf):
        x.flat[rng.integers(x.size)] = value
    kwargs = dict(kernel_size=(kh, kw), stride=1, padding=(ph, pw), dilation=(dh, dw),
                  ceil_mode=draw(st.booleans()))
    expected = torch_call(torch, "max_pool2d", x, **kwargs)
    assume(not isinstance(expected, Exception))  # windows larger than the padded input
    out = numbaconv.max_pool2d(x, **kwargs)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, numbaconv.max_pool2d(x, **kwargs, return_indices=True)[0])


def test_repeated_calls_reuse_the_checked_spec_and_invalid_ones_still_raise():
    from numbaconv import pool_spec

    x = np.zeros((1, 2, 8, 8), np.float32)
    first = pool_spec.pool_spec("max_pool2d", x.shape, 2, None, 0, 1, False)
    assert pool_spec.pool_spec("max_pool2d", x.shape, 2, None, 0, 1, False) is first
    for bad in (dict(kernel_size=True), dict(kernel_size=2.0), dict(kernel_size=0)):
        for _ in range(2):  # the second time too: failures are never remembered
            with pytest.raises((TypeError, ValueError)):
                numbaconv.max_pool2d(x, **bad)
