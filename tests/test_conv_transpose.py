"""conv_transpose1d/2d against the scatter reference and torch; argument checking."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv
import reference
from helpers import TOLERANCE, WINOGRAD_TOLERANCE, relative_error


def pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def reference_transpose(op, x, w, b, stride, padding, output_padding, groups, dilation):
    x, w = np.asarray(x), np.asarray(w)
    if op == "conv_transpose1d":
        one = lambda v: (1, v[0] if isinstance(v, (tuple, list)) else v)
        zero = lambda v: (0, v[0] if isinstance(v, (tuple, list)) else v)
        batched = x.ndim == 3
        xb = x if batched else x[None]
        out = reference.conv_transpose2d(xb[:, :, None], w[:, :, None], b, one(stride),
                                         zero(padding), zero(output_padding), one(dilation),
                                         groups)[:, :, 0]
    else:
        batched = x.ndim == 4
        xb = x if batched else x[None]
        out = reference.conv_transpose2d(xb, w, b, pair(stride), pair(padding),
                                         pair(output_padding), pair(dilation), groups)
    return out if batched else out[0]


def torch_transpose(torch, op, x, w, b, stride, padding, output_padding, groups, dilation):
    dtype = np.result_type(*[a for a in (x, w, b) if a is not None])
    t = lambda a: None if a is None else torch.from_numpy(np.array(a, dtype=dtype))
    fn = getattr(torch.nn.functional, op)
    try:
        return fn(t(x), t(w), t(b), stride, padding, output_padding, groups, dilation).numpy()
    except Exception as exc:
        return exc


CASES = [  # (op, x shape, w shape, kwargs)
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d", (1, 4, 5, 5), (4, 3, 3, 2),
     dict(stride=(1, 3), padding=(2, 0), output_padding=(1, 2), dilation=(2, 1), groups=2)),
    ("conv_transpose2d", (4, 5, 5), (4, 3, 3, 3), dict(padding=2)),  # unbatched, crops
    ("conv_transpose2d", (1, 32, 6, 7), (32, 16, 3, 3), dict(padding=1)),  # Winograd path
    ("conv_transpose2d", (2, 6, 3, 4), (6, 1, 2, 2), dict(stride=2, groups=6)),  # depthwise
    ("conv_transpose2d", (1, 2, 1, 1), (2, 3, 3, 3), dict(padding=1)),  # 1x1 output
    ("conv_transpose2d", (1, 2, 4, 4), (2, 2, 4, 4), dict(stride=3, padding=(3, 0))),
    ("conv_transpose2d", (2, 3, 4, 5), (3, 2, 1, 2), dict(stride=3, padding=(0, 1),
                                                         output_padding=2)),  # outputs no tap reaches
    ("conv_transpose2d", (8, 16, 7, 7), (16, 8, 4, 4), dict(stride=2, padding=1)),  # DCGAN-like
    ("conv_transpose1d", (2, 4, 7), (4, 3, 3), dict(stride=3, padding=2, output_padding=1)),
    ("conv_transpose1d", (4, 7), (4, 1, 5), dict(dilation=2, groups=2, padding=3)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op, x_shape, w_shape, kwargs", CASES)
def test_conv_transpose_cases(torch, rng, dtype, op, x_shape, w_shape, kwargs):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype)
    args = dict(stride=1, padding=0, output_padding=0, groups=1, dilation=1)
    args.update(kwargs)
    originals = (x.copy(), w.copy(), b.copy())
    out = getattr(numbaconv, op)(x, w, b, **args)
    expected = reference_transpose(op, x, w, b, **args)
    assert out.shape == expected.shape and out.dtype == np.dtype(dtype)
    plan_algorithm = "winograd" if w_shape[0] >= 32 else "direct-or-gemm"
    limit = (WINOGRAD_TOLERANCE if plan_algorithm == "winograd" else TOLERANCE)[dtype]
    assert relative_error(out, expected) < limit
    assert relative_error(out, torch_transpose(torch, op, x, w, b, **args)) < limit
    for before, after in zip(originals, (x, w, b)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("algorithm", ["direct", "gemm", "winograd_f2x2"])
def test_every_algorithm_runs_transposed(rng, algorithm):
    x = rng.standard_normal((1, 3, 5, 6))
    w = rng.standard_normal((3, 4, 3, 3))
    out = numbaconv.conv_transpose2d(x, w, padding=1, algorithm=algorithm)
    expected = reference.conv_transpose2d(x, w, None, (1, 1), (1, 1))
    assert relative_error(out, expected) < 1e-12


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 6, 5, 7), (6, 4, 4, 4), dict(stride=2, padding=1)),            # windows overlap
    ((3, 4, 6, 9), (4, 5, 2, 2), dict(stride=2)),                       # they do not
    ((1, 6, 7, 4), (6, 2, 3, 2), dict(stride=(3, 2), dilation=(1, 2), padding=(2, 1),
                                      output_padding=(1, 0), groups=3)),
])
@pytest.mark.parametrize("block_rows, block_cols", [(1, 5), (4, 13), (7, 1000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matrix_product_kernel_every_job_split(rng, monkeypatch, x_shape, w_shape, kwargs,
                                               block_rows, block_cols, dtype):
    """cpu.transposed_gemm with jobs cut every way: blocks of a few output channels, of
    columns starting mid-row (windows that do not overlap) or of whole images (they do,
    so no two jobs add into one output); against the scatter reference."""
    from numbaconv.cpu import transposed_gemm

    def jobs(batch, in_h, in_w, kg, groups, taps, overlapping, itemsize, threads):
        plane = in_h * in_w
        return min(block_rows, kg), (-(-block_cols // plane) * plane if overlapping
                                     else block_cols)

    monkeypatch.setattr(transposed_gemm, "transposed_jobs", jobs)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype)
    out = numbaconv.conv_transpose2d(x, w, b, **kwargs)
    expected = reference_transpose("conv_transpose2d", x, w, b, **(
        dict(stride=1, padding=0, output_padding=0, groups=1, dilation=1) | kwargs))
    assert relative_error(out, expected) < TOLERANCE[np.dtype(dtype).name]


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1), dict(stride=(3, 2), padding=(4, 0),
                                                                  output_padding=(2, 1)),
                                    dict(stride=4, padding=3, groups=2)])
def test_matrix_product_equals_zero_insertion(rng, kwargs):
    """auto runs a strided transposed convolution as a matrix product and scatter-add,
    an explicit algorithm the zero-inserted form: the same sum."""
    x = rng.standard_normal((2, 4, 5, 6))
    w = rng.standard_normal((4, 3, 3, 5))
    bias = np.arange(3.0 * kwargs.get("groups", 1))
    product = numbaconv.conv_transpose2d(x, w, bias, **kwargs)
    inserted = numbaconv.conv_transpose2d(x, w, bias, **kwargs, algorithm="direct")
    assert product.shape == inserted.shape
    assert relative_error(product, inserted) < 1e-12


@pytest.mark.parametrize("x_shape, w_shape, kwargs, by_product", [
    ((3, 16, 6, 7), (16, 6, 5, 5), {}, False),  # LeNet-like: direct's tiles, padded in place
    ((2, 12, 5, 5), (12, 7, 5, 3), dict(padding=(1, 2)), False),  # ragged tiles, asymmetric
    ((2, 12, 5, 6), (12, 8, 3, 3), dict(dilation=2, output_padding=1, padding=1), True),
    ((2, 12, 5, 6), (12, 8, 3, 3), dict(padding=3), False),  # crops: a cropped copy of x
    ((2, 8, 5, 6), (8, 2, 3, 3), dict(padding=1, groups=4), False),
    ((2, 8, 5, 6), (8, 2, 3, 3), dict(padding=1, groups=4, dilation=2, output_padding=1),
     False),  # grouped, padded in place one more at the bottom and right
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stride_one_runs_as_the_convolution_it_equals(torch, rng, monkeypatch, x_shape,
                                                      w_shape, kwargs, by_product, dtype):
    """At stride 1 a transposed convolution whose equivalent convolution runs as direct's
    register tiles (or is grouped, depthwise, pointwise) runs as that convolution, which
    pads the input itself where the equivalent padding is not negative (no zero-inserted
    copy, else from a cropped copy); dilated ones by the matrix product; against torch."""
    import numbaconv.transposed as transposed

    used = []
    by_matrix = transposed.by_matrix_product
    monkeypatch.setattr(transposed, "by_matrix_product",
                        lambda *a, **k: used.append("product") or by_matrix(*a, **k))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    args = dict(stride=1, padding=0, output_padding=0, groups=1, dilation=1) | kwargs
    out = numbaconv.conv_transpose2d(x, w, **args)
    assert bool(used) == by_product
    expected = torch_transpose(torch, "conv_transpose2d", x, w, None, **args)
    assert relative_error(out, expected) < TOLERANCE[np.dtype(dtype).name]


def test_empty_batch():
    out = numbaconv.conv_transpose2d(np.zeros((0, 2, 3, 3)), np.ones((2, 3, 3, 3)), stride=2)
    assert out.shape == (0, 3, 7, 7)


INVALID = [
    ("output_padding not below stride or dilation", dict(output_padding=1), ValueError),
    ("output_padding >= both", dict(stride=2, output_padding=2), ValueError),
    ("negative padding", dict(padding=-1), ValueError),
    ("negative output_padding", dict(stride=2, output_padding=-1), ValueError),
    ("padding string", dict(padding="same"), TypeError),
    ("output too small", dict(padding=4), ValueError),
    ("groups not dividing", dict(groups=3), ValueError),
    ("zero stride", dict(stride=0), ValueError),
    ("zero dilation", dict(dilation=0), ValueError),
    ("zero groups", dict(groups=0), ValueError),
    ("three strides", dict(stride=(1, 1, 1)), ValueError),
    ("float stride", dict(stride=1.5), TypeError),
]


@pytest.mark.parametrize("name, kwargs, error", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_arguments(torch, name, kwargs, error):
    x, w = np.ones((1, 4, 5, 5), np.float32), np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises(error):
        numbaconv.conv_transpose2d(x, w, **kwargs)
    args = dict(stride=1, padding=0, output_padding=0, groups=1, dilation=1)
    args.update(kwargs)
    assert isinstance(torch_transpose(torch, "conv_transpose2d", x, w, None, **args), Exception)


@pytest.mark.parametrize("x_shape, w_shape, b_shape", [
    ((1, 3, 5, 5), (4, 3, 3, 3), None),  # input channels != weight.shape[0]
    ((1, 4, 5, 5), (4, 3, 3, 3), (4,)),  # bias must have C_out = 3 elements
    ((1, 4, 0, 5), (4, 3, 3, 3), None),  # empty spatial dimension
    ((1, 4, 5, 5), (4, 3, 3), None),  # weight of the wrong rank
    ((5, 5), (4, 3, 3, 3), None),
])
def test_invalid_shapes(torch, x_shape, w_shape, b_shape):
    x, w = np.ones(x_shape, np.float32), np.ones(w_shape, np.float32)
    b = None if b_shape is None else np.ones(b_shape, np.float32)
    with pytest.raises(ValueError):
        numbaconv.conv_transpose2d(x, w, b)
    assert isinstance(torch_transpose(torch, "conv_transpose2d", x, w, b, 1, 0, 0, 1, 1),
                      Exception)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_random_arguments_agree_with_torch(torch, data):
    """Random arguments, valid or not: numbaconv accepts exactly what torch accepts, and
    then computes torch's result (and the reference's)."""
    draw = data.draw
    op = draw(st.sampled_from(["conv_transpose1d", "conv_transpose2d"]))
    nsp = 1 if op.endswith("1d") else 2
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    size = tuple(draw(st.integers(1, 6)) for _ in range(nsp))
    ints = lambda lo, hi: draw(st.one_of(st.integers(lo, hi),
                                         st.tuples(*[st.integers(lo, hi)] * nsp)))
    args = dict(stride=ints(1, 3), padding=ints(0, 3), output_padding=ints(0, 2),
                groups=groups, dilation=ints(1, 2))
    in_channels = groups * cg if draw(st.integers(0, 9)) else groups * cg + 1
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    batched = draw(st.booleans())
    x = rng.standard_normal(((2,) if batched else ()) + (in_channels,) + size)
    w = rng.standard_normal((groups * cg, kg) + kernel)
    b = rng.standard_normal(groups * kg) if draw(st.booleans()) else None
    expected = torch_transpose(torch, op, x, w, b, **args)
    if isinstance(expected, Exception):
        with pytest.raises((ValueError, TypeError)):
            getattr(numbaconv, op)(x, w, b, **args)
        return
    out = getattr(numbaconv, op)(x, w, b, **args)
    assert out.shape == expected.shape
    assert relative_error(out, expected) < 1e-10
    assert relative_error(out, reference_transpose(op, x, w, b, **args)) < 1e-10


@pytest.mark.parametrize("x_shape", [(3, 5, 1, 1), (5, 1, 1), (1, 70, 1, 1)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_pixel_input_is_a_product(torch, rng, x_shape, stride, with_bias, dtype):
    """A 1x1 unpadded input (a GAN generator's first layer) runs as one matrix product
    written in place (transposed._from_one_pixel), bias added per output channel."""
    c_in = x_shape[-3]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((c_in, 67, 4, 3)).astype(dtype)
    b = rng.standard_normal(67).astype(dtype) if with_bias else None
    out = numbaconv.conv_transpose2d(x, w, b, stride=stride)
    expected = torch_transpose(torch, "conv_transpose2d", x, w, b, stride, 0, 0, 1, 1)
    assert out.shape == expected.shape == x_shape[:-3] + (67, 4, 3)
    tolerance = TOLERANCE[np.dtype(dtype).name]
    assert relative_error(out, expected) < tolerance
    assert relative_error(out, reference_transpose("conv_transpose2d", x, w, b, stride, 0, 0, 1,
                                                   1)) < tolerance
