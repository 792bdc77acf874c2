"""conv2d / conv1d values against the NumPy reference and torch, for every algorithm."""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import numbaconv
from conftest import TORCH
from numbaconv.epilogue import NO_EPILOGUE
from helpers import check_conv, reference_conv
from torch_oracle import torch_conv

ALGORITHMS = [a for a in numbaconv.algorithms() if a != "autotune"]


def random(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def supported_algorithms(*args, **kwargs):
    """Registered algorithms that can run these conv2d arguments."""
    spec = numbaconv.plan(*args, **kwargs).spec
    return [name for name, algo in numbaconv.planner.REGISTRY.items() if algo.supports(spec) is None]


CASES_2D = [
    # (N, C, H, W), (K, C/g, kH, kW), kwargs
    ((2, 3, 9, 11), (4, 3, 3, 3), {}),
    ((2, 3, 9, 11), (4, 3, 3, 3), dict(padding=1)),
    ((1, 4, 10, 7), (6, 2, 3, 2), dict(stride=2, padding=(1, 2), groups=2)),
    ((2, 4, 12, 12), (4, 1, 3, 3), dict(padding=1, groups=4)),  # depthwise
    ((2, 4, 12, 12), (8, 1, 3, 3), dict(padding=1, groups=4)),  # depthwise multiplier 2
    ((1, 2, 13, 14), (3, 2, 3, 3), dict(dilation=2, padding=2)),
    ((1, 2, 13, 14), (3, 2, 3, 3), dict(dilation=(1, 3), stride=(3, 1))),
    ((1, 3, 8, 8), (2, 3, 4, 4), dict(padding="same")),  # even kernel: extra pad bottom/right
    ((1, 3, 8, 8), (2, 3, 4, 3), dict(padding="same", dilation=(1, 2))),
    ((1, 3, 8, 8), (2, 3, 3, 3), dict(padding="valid")),
    ((1, 3, 8, 9), (2, 3, 3, 3), dict(padding=2, padding_mode="reflect")),
    ((1, 3, 8, 9), (2, 3, 3, 3), dict(padding=(3, 1), padding_mode="replicate")),
    ((1, 3, 5, 6), (2, 3, 3, 3), dict(padding=(5, 6), padding_mode="circular")),
    ((1, 3, 8, 8), (2, 3, 4, 4), dict(padding="same", padding_mode="reflect")),
    ((2, 6, 7, 7), (6, 3, 1, 1), dict(groups=2)),
    ((3, 5, 9, 9), (7, 5, 1, 1), {}),  # 1x1: GEMM straight on the image matrix
    ((1, 1, 1, 1), (1, 1, 1, 1), {}),
    ((1, 2, 1, 9), (2, 2, 1, 3), dict(stride=2)),
    ((3, 1, 28, 28), (6, 1, 5, 5), dict(padding=2)),  # LeNet-like
    ((1, 3, 23, 23), (8, 3, 7, 7), dict(stride=2, padding=3)),  # ResNet stem-like
    ((2, 16, 9, 10), (16, 16, 3, 3), dict(padding=1)),  # Winograd-eligible, ragged tiles
    ((1, 16, 6, 5), (8, 16, 3, 3), dict(padding=(0, 1))),
    ((1, 16, 80, 79), (8, 16, 3, 3), dict(padding=1)),  # enough tiles for Winograd's fused blocks
    ((2, 32, 7, 7), (64, 16, 3, 3), dict(padding=1, groups=2)),  # grouped Winograd
    ((1, 2048, 1, 1), (16, 2048, 1, 1), {}),  # huge channel count, 1x1 image
    ((2, 512, 2, 3), (8, 512, 3, 3), dict(padding=1)),  # huge channel count, tiny image
    ((1, 3, 1, 40), (4, 3, 1, 5), dict(padding=(0, 2))),  # a 1-pixel-high image
    # Padding wider than the image: whole rows and columns of taps read only zeros.
    ((2, 2, 3, 4), (3, 2, 3, 3), dict(padding=(4, 5), stride=(2, 3), dilation=(1, 2))),
]


@pytest.mark.parametrize("kernel", ["im2col_whole", "im2col", "tap_tiles"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", CASES_2D)
def test_every_gemm_kernel(xs, ws, kwargs, dtype, kernel, rng, monkeypatch):
    """gemm's kernels for layers that are not 1x1 (registry.gemm_kernel), each forced onto
    every case: the whole im2col matrix at once, in blocks of rows, per tap."""
    from numbaconv import registry

    monkeypatch.setattr(registry, "GEMM_WHOLE_UNFOLD_BYTES",
                        1 << 40 if kernel == "im2col_whole" else 0)
    monkeypatch.setattr(registry, "TAP_WORK_AT_MOST", 1.0 if kernel == "tap_tiles" else -1.0)
    x, w, b = random(rng, xs, dtype), random(rng, ws, dtype), random(rng, ws[0], dtype)
    spec = numbaconv.plan(x, w, b, **kwargs).spec
    if spec.kernel_height * spec.kernel_width > 1 and spec.padding_mode == "zeros":
        assert registry.gemm_kernel(spec) == kernel or kernel == "tap_tiles" and \
            spec.groups > 1
    check_conv("conv2d", x, w, b, **kwargs, algorithm="gemm", torch=TORCH)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", CASES_2D)
def test_conv2d_cases(xs, ws, kwargs, dtype, algorithm, rng):
    x, w, b = random(rng, xs, dtype), random(rng, ws, dtype), random(rng, ws[0], dtype)
    plan = numbaconv.plan(x, w, b, **kwargs, algorithm="auto")
    if algorithm != "auto":
        why_not = numbaconv.planner.REGISTRY[algorithm].supports(plan.spec)
        if why_not is not None:
            with pytest.raises(numbaconv.UnsupportedAlgorithm):
                numbaconv.conv2d(x, w, b, **kwargs, algorithm=algorithm)
            return
    check_conv("conv2d", x, w, b, **kwargs, algorithm=algorithm, torch=TORCH)
    check_conv("conv2d", x, w, None, **kwargs, algorithm=algorithm, torch=TORCH)


CASES_1D = [
    ((2, 3, 17), (4, 3, 3), {}),
    ((2, 4, 17), (6, 2, 5), dict(stride=3, padding=2, dilation=2, groups=2)),
    ((1, 4, 16), (4, 1, 4), dict(padding="same", groups=4)),
    ((1, 2, 9), (2, 2, 3), dict(padding=4, padding_mode="circular")),
    ((1, 2, 9), (2, 2, 3), dict(padding=(3,), padding_mode="reflect")),
    ((1, 2, 9), (2, 2, 3), dict(padding=2, padding_mode="replicate", stride=(2,))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", CASES_1D)
def test_conv1d_cases(xs, ws, kwargs, dtype, rng):
    x, w, b = random(rng, xs, dtype), random(rng, ws, dtype), random(rng, ws[0], dtype)
    check_conv("conv1d", x, w, b, **kwargs, torch=TORCH)
    check_conv("conv1d", x[0], w, b, **kwargs, torch=TORCH)  # unbatched


def test_unbatched_conv2d(rng):
    x, w = random(rng, (3, 8, 8)), random(rng, (5, 3, 3, 3))
    out = check_conv("conv2d", x, w, padding=1, torch=TORCH)
    assert out.shape == (5, 8, 8)


@pytest.mark.parametrize("op, xs, ws", [
    ("conv2d", (0, 3, 8, 8), (4, 3, 3, 3)),   # N = 0
    ("conv2d", (2, 0, 8, 8), (4, 0, 3, 3)),   # C = 0 (torch returns no channels)
    ("conv2d", (0, 5, 5), (4, 0, 3, 3)),      # unbatched, C = 0
    ("conv1d", (0, 3, 8), (4, 3, 3)),
])
def test_empty_inputs(op, xs, ws, rng):
    x, w, b = random(rng, xs), random(rng, ws), random(rng, ws[0])
    out = check_conv(op, x, w, b, torch=TORCH)
    assert out.size == 0


def test_mixed_dtypes_promote_to_float64(rng):
    x, w = random(rng, (1, 2, 6, 6), np.float32), random(rng, (3, 2, 3, 3), np.float64)
    out = check_conv("conv2d", x, w, random(rng, 3, np.float32), torch=TORCH)
    assert out.dtype == np.float64


def test_array_likes_and_odd_strides_are_accepted_and_untouched(rng):
    base = random(rng, (2, 3, 12, 14))
    views = {
        "negative strides": base[:, :, ::-1, ::-2],
        "fortran": np.asfortranarray(base),
        "transposed": base.transpose(0, 1, 3, 2),
        "list": base[:1, :1, :4, :5].tolist(),
    }
    w = random(rng, (4, 3, 3, 3))
    w_list = w[:, :1].tolist()
    for name, x in views.items():
        weight = w_list if name == "list" else w
        before = np.array(x, copy=True)
        check_conv("conv2d", x, weight, padding=1, torch=TORCH)
        np.testing.assert_array_equal(np.asarray(x), before, err_msg=name)


def test_read_only_inputs_are_not_modified(rng):
    x, w, b = random(rng, (2, 3, 8, 8)), random(rng, (4, 3, 3, 3)), random(rng, 4)
    copies = [a.copy() for a in (x, w, b)]
    for a in (x, w, b):
        a.flags.writeable = False
    for algorithm in supported_algorithms(x, w, b, padding=1, padding_mode="reflect"):
        numbaconv.conv2d(x, w, b, padding=1, padding_mode="reflect", algorithm=algorithm)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


def test_result_is_a_fresh_array(rng):
    x, w = random(rng, (1, 1, 4, 4)), np.ones((1, 1, 1, 1), np.float32)
    out = numbaconv.conv2d(x, w)
    assert not np.shares_memory(out, x)


# --------------------------------------------------------------------------- properties


@st.composite
def conv_arguments(draw):
    op = draw(st.sampled_from(["conv1d", "conv2d"]))
    nsp = 1 if op == "conv1d" else 2
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    spatial = tuple(draw(st.integers(1, 12)) for _ in range(nsp))
    n = draw(st.integers(0, 3))
    pair = lambda lo, hi: draw(st.one_of(st.integers(lo, hi),
                                          st.tuples(*[st.integers(lo, hi)] * nsp)))
    stride = pair(1, 3)
    dilation = pair(1, 3)
    padding = draw(st.one_of(st.just("same"), st.just("valid"), st.integers(0, 3),
                             st.tuples(*[st.integers(0, 3)] * nsp)))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    batched = draw(st.booleans())
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(op=op, xs=((n,) if batched else ()) + (cin,) + spatial,
                ws=(cout, cin // groups) + kernel, bias=bias, stride=stride, padding=padding,
                dilation=dilation, groups=groups, padding_mode=mode, dtype=dtype, seed=seed)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_arguments())
def test_random_arguments_match_reference_and_torch(args):
    rng = np.random.default_rng(args["seed"])
    x = random(rng, args["xs"], args["dtype"])
    w = random(rng, args["ws"], args["dtype"])
    b = random(rng, args["ws"][0], args["dtype"]) if args["bias"] else None
    kwargs = {k: args[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode")}
    fn = numbaconv.conv1d if args["op"] == "conv1d" else numbaconv.conv2d
    expected = None
    if TORCH is not None:
        expected = torch_conv(TORCH, args["op"], x, w, b, **kwargs)
    try:
        out = fn(x, w, b, **kwargs)
    except (ValueError, TypeError) as exc:
        # numbaconv rejected: torch must reject too.
        if TORCH is not None:
            assert isinstance(expected, Exception), f"numbaconv rejected what torch ran: {exc}"
        return
    if TORCH is not None:
        assert not isinstance(expected, Exception), f"numbaconv ran what torch rejected: {expected}"
        assert out.shape == expected.shape
    ref = reference_conv(args["op"], x, w, b, **kwargs)
    assert out.shape == ref.shape
    check_conv(args["op"], x, w, b, **kwargs, torch=TORCH)


@pytest.mark.parametrize("algorithm", ["winograd_f2x2", "winograd_f4x4"])
def test_weights_mutated_in_place_are_not_served_stale(algorithm, rng):
    x, w = random(rng, (1, 16, 12, 12)), random(rng, (16, 16, 3, 3))
    first = numbaconv.conv2d(x, w, padding=1, algorithm=algorithm)
    w[3, 5, 1, 2] += 1.0  # same array, same address: only the contents changed
    second = numbaconv.conv2d(x, w, padding=1, algorithm=algorithm)
    expected = numbaconv.conv2d(x, w, padding=1, algorithm="gemm")
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, expected, rtol=0, atol=2e-4 * np.abs(expected).max())


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("xs, ws, kwargs", [
    ((2, 16, 9, 11), (24, 16, 3, 3), dict(padding=1)),
    ((1, 8, 12, 10), (8, 4, 3, 3), dict(padding=(2, 1), dilation=(2, 1), groups=2)),
])
def test_winograd_stage_by_stage_pipeline(tile, xs, ws, kwargs, rng, monkeypatch):
    # Large weights make Winograd run stage by stage instead of in blocks; force it.
    monkeypatch.setattr(numbaconv.registry, "WINOGRAD_STAGED_WEIGHT_BYTES", 0)
    x, w, b = random(rng, xs), random(rng, ws), random(rng, ws[0])
    check_conv("conv2d", x, w, b, **kwargs, algorithm=f"winograd_f{tile}x{tile}", torch=TORCH)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("xs, ws, kwargs", [
    ((1, 16, 13, 13), (24, 16, 5, 5), dict(padding=2)),  # AlexNet-like, ragged tiles
    ((2, 4, 11, 10), (6, 2, 7, 5), dict(padding=(3, 1), groups=2)),  # 3x2 pieces, groups
    ((1, 3, 8, 8), (2, 3, 4, 4), dict(padding="same")),  # even: padding 1 top, 2 bottom
    ((2, 8, 9, 9), (8, 8, 3, 6), dict(padding=(5, 0))),  # padding beyond a piece's reach
    ((1, 6, 12, 11), (5, 6, 5, 5), dict(padding=2, padding_mode="reflect")),
    ((1, 5, 5, 6), (3, 5, 5, 5), {}),  # one output row
])
def test_winograd_runs_larger_kernels_as_3x3_pieces(tile, xs, ws, kwargs, rng, monkeypatch):
    x, w, b = random(rng, xs), random(rng, ws), random(rng, ws[0])
    algorithm = f"winograd_f{tile}x{tile}"
    check_conv("conv2d", x, w, b, **kwargs, algorithm=algorithm, torch=TORCH)
    check_conv("conv2d", x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
               **kwargs, algorithm=algorithm, torch=TORCH)
    monkeypatch.setattr(numbaconv.registry, "WINOGRAD_STAGED_WEIGHT_BYTES", 0)
    check_conv("conv2d", x, w, b, **kwargs, algorithm=algorithm, torch=TORCH)


def test_winograd_pieces_input_and_weights(rng):
    """The stacked input and weights against their definition, piece by piece."""
    from numbaconv.cpu.winograd import piece_weights, stack_pieces
    x, w = random(rng, (2, 4, 6, 7)), random(rng, (3, 2, 5, 4))  # 2 groups of 2 channels
    top, left, groups, out_h, out_w = 2, 1, 2, 6, 6
    padded = np.zeros((2, 4, 12, 12), np.float32)
    padded[:, :, top:top + 6, left:left + 7] = x
    stacked = np.full((2, 2 * 4 * 2, out_h + 2, out_w + 2), np.nan, np.float32)
    stack_pieces(x, top, left, 2, groups, stacked)
    pieces = piece_weights(w, 2, 2)
    assert pieces.shape == (3, 4 * 2, 3, 3)
    for a in range(2):
        for b in range(2):
            piece = a * 2 + b
            for g in range(groups):
                for c in range(2):
                    np.testing.assert_array_equal(
                        stacked[:, (g * 4 + piece) * 2 + c],
                        padded[:, g * 2 + c, 3 * a:3 * a + out_h + 2, 3 * b:3 * b + out_w + 2])
            taps = np.zeros((3, 2, 3, 3), np.float32)
            block = w[:, :, 3 * a:3 * a + 3, 3 * b:3 * b + 3]
            taps[:, :, :block.shape[2], :block.shape[3]] = block
            np.testing.assert_array_equal(pieces[:, piece * 2:piece * 2 + 2], taps)


def _has_output(size, padding):
    if padding == "same":
        padding = 1
    pad = (padding, padding) if isinstance(padding, int) else padding
    return size[0] + 2 * pad[0] >= 3 and size[1] + 2 * pad[1] >= 3


DEPTHWISE_3X3_CASES = [(size, padding)
                       for size in [(1, 1), (2, 5), (3, 3), (5, 16), (3, 33), (7, 17), (19, 40)]
                       for padding in [0, 1, (2, 0), (0, 3), (2, 1), (0, 1), "same"]
                       if _has_output(size, padding)]


@pytest.mark.parametrize("kernel", ["rows", "stacked"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size, padding", DEPTHWISE_3X3_CASES)
def test_depthwise_3x3_stride1_edges(rng, torch, size, padding, dtype, kernel, monkeypatch):
    """The dedicated depthwise 3x3 kernels (row by row with a flat stencil, or images
    stacked per channel): rows and columns whose taps fall in the padding."""
    from numbaconv import registry

    monkeypatch.setattr(registry, "DEPTHWISE_STACKED_BELOW_WIDTH",
                        0 if kernel == "rows" else 10**6)
    h, w = size
    # The input ends just before NaNs: an output that read past its plane would be NaN.
    guarded = np.full(2 * 5 * h * w + 64, np.nan, dtype)
    x = guarded[:2 * 5 * h * w].reshape(2, 5, h, w)
    x[...] = random(rng, (2, 5, h, w), dtype)
    weight = random(rng, (5, 1, 3, 3), dtype)
    bias = random(rng, (5,), dtype)
    check_conv("conv2d", x, weight, bias, padding=padding, groups=5, algorithm="direct",
               torch=torch)


@st.composite
def tiled_direct_arguments(draw):
    """Layers the register-tiled direct kernel runs: >= 4 output channels per group."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kg = draw(st.sampled_from([4, 5, 6, 7, 12, 13]))
    cin = draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    reach_h, reach_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    h = draw(st.integers(max(1, reach_h - 2 * padding[0]), 20))
    w = draw(st.integers(max(1, reach_w - 2 * padding[1]), 40))
    return dict(xs=(draw(st.integers(1, 3)), groups * cin, h, w), ws=(groups * kg, cin, kh, kw),
                stride=stride, dilation=dilation, padding=padding, groups=groups,
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiled_direct_arguments())
def test_tiled_direct_kernel(args):
    """direct.tiled_conv2d: ragged channel tiles, strides, dilations, groups, float64. The
    input is followed by NaNs: a position that read past it would come out NaN."""
    rng = np.random.default_rng(args["seed"])
    size = int(np.prod(args["xs"]))
    guarded = np.full(size + 256, np.nan, args["dtype"])
    x = guarded[:size].reshape(args["xs"])
    x[...] = random(rng, args["xs"], args["dtype"])
    w = random(rng, args["ws"], args["dtype"])
    b = random(rng, args["ws"][0], args["dtype"]) if args["bias"] else None
    kwargs = {k: args[k] for k in ("stride", "padding", "dilation", "groups")}
    check_conv("conv2d", x, w, b, **kwargs, algorithm="direct", torch=TORCH)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 12), w=st.integers(1, 40),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       dh=st.integers(1, 3), dw=st.integers(1, 3), pt=st.integers(0, 3), pl=st.integers(0, 3),
       extra=st.integers(0, 3), workers=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
@example(n=3, c=4, h=7, w=7, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, pt=0, pl=0, extra=2,
         workers=2, seed=0)  # a pointwise layer's images side by side: one copy per plane
@example(n=2, c=3, h=5, w=20, kh=1, kw=1, sh=1, sw=1, dh=2, dw=3, pt=0, pl=0, extra=0,
         workers=3, seed=1)
def test_unfold_against_numpy(n, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, extra, workers,
                              seed):
    """gemm.unfold (the im2col matrix of every image side by side), narrow rows (a table of
    offsets) and wide ones (a copy per row), against slices of the zero-padded input; extra
    columns past the images are left alone."""
    from numbaconv.cpu.gemm import unfold
    out_h = (h + 2 * pt - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pl - dw * (kw - 1) - 1) // sw + 1
    if out_h < 1 or out_w < 1:
        return
    x = random(np.random.default_rng(seed), (n, c, h, w))
    padded = np.pad(x, ((0, 0), (0, 0), (pt, pt), (pl, pl)))
    expected = np.empty((c, kh, kw, n, out_h, out_w), x.dtype)
    for r in range(kh):
        for s in range(kw):
            window = padded[:, :, r * dh:, s * dw:][:, :, ::sh, ::sw][:, :, :out_h, :out_w]
            expected[:, r, s] = window.transpose(1, 0, 2, 3)
    positions = n * out_h * out_w
    cols = np.full((c * kh * kw, positions + extra), np.nan, x.dtype)
    unfold(x, sh, sw, pt, pl, dh, dw, kh, kw, out_h, out_w, cols, workers=workers)
    np.testing.assert_array_equal(cols[:, :positions], expected.reshape(c * kh * kw, -1))
    assert np.isnan(cols[:, positions:]).all()


@pytest.mark.parametrize("xs, ws, kwargs", [
    ((1, 40, 7, 9), (50, 20, 3, 3), dict(groups=2, padding=1)),       # ragged channel tiles
    ((1, 64, 14, 14), (96, 64, 3, 3), dict(stride=2, padding=1)),
    ((1, 32, 6, 6), (200, 32, 1, 1), dict(stride=2)),
    ((2, 16, 5, 5), (30, 16, 2, 2), dict(dilation=2, padding=1)),
])
@pytest.mark.parametrize("threads", [1, 2, 7])
def test_tiled_direct_kernel_split_by_output_channels(rng, xs, ws, kwargs, threads):
    """Small batch-1 images run as jobs of output-channel blocks (tiled_jobs), not as row
    blocks thinner than a register tile; every split must give the reference result."""
    from numbaconv import registry
    from numbaconv.cpu import direct

    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    spec = numbaconv.plan(x, w, **kwargs).spec
    block_rows, channel_block = direct.tiled_jobs(spec, x.itemsize, threads)
    assert channel_block % registry.direct_tile_rows(spec) == 0
    assert 1 <= block_rows <= spec.out_height
    if threads == 7:  # plenty of threads wanted, few rows: channel blocks are split
        rows = registry.direct_tile_rows(spec)
        assert channel_block < -(-spec.out_channels_per_group // rows) * rows
    out = np.empty(spec.output_shape, np.float32)
    xp = np.ascontiguousarray(x)
    run = direct.run_grouped_tiled if spec.groups > 1 else direct.run_tiled
    run(spec, xp, np.ascontiguousarray(w), np.zeros(ws[0], np.float32), out)
    full = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | kwargs
    np.testing.assert_allclose(out, reference_conv("conv2d", x, w, None, **full),
                               rtol=1e-4, atol=1e-4)


@st.composite
def padded_layer_arguments(draw):
    """Ungrouped layers with wide padding and dilation, up to more padding than image."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    padding = (draw(st.integers(0, 12)), draw(st.integers(0, 12)))
    reach_h, reach_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    h = draw(st.integers(max(1, reach_h - 2 * padding[0]), 24))
    w = draw(st.integers(max(1, reach_w - 2 * padding[1]), 30))
    return dict(xs=(draw(st.integers(1, 2)), draw(st.integers(1, 9)), h, w),
                ws=(draw(st.integers(1, 13)), None, kh, kw),
                stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                dilation=dilation, padding=padding,
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(padded_layer_arguments())
def test_tap_tiles_kernel(args):
    """gemm.tap_tiles (cpu.channels_last), forced onto every layer (its rule otherwise
    picks only layers whose taps read mostly padding): taps skipped row by row, tiles
    over the zero columns, ragged output widths and channel counts, strides."""
    from numbaconv import registry

    rng = np.random.default_rng(args["seed"])
    xs, (k, _, kh, kw) = args["xs"], args["ws"]
    x, w = random(rng, xs, args["dtype"]), random(rng, (k, xs[1], kh, kw), args["dtype"])
    b = random(rng, k, args["dtype"]) if args["bias"] else None
    kwargs = {key: args[key] for key in ("stride", "padding", "dilation")}
    spec = numbaconv.plan(x, w, b, **kwargs).spec
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "TAP_WORK_AT_MOST", 1.0)
        if spec.kernel_height * spec.kernel_width > 1:
            assert registry.gemm_kernel(spec) == "tap_tiles"
        check_conv("conv2d", x, w, b, **kwargs, algorithm="gemm", torch=TORCH)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kwargs", [
    ((1, 300, 13, 11), (70, 300, 3, 3), dict(padding=6, dilation=6)),  # two depth blocks
    ((2, 17, 9, 40), (33, 17, 3, 3), dict(padding=(9, 20), dilation=(9, 20))),  # wide rows
    ((1, 8, 6, 6), (130, 8, 3, 3), dict(padding=4, dilation=4)),  # 3 panels, the last ragged
])
def test_tap_tiles_depth_blocks_and_panels(xs, ws, kwargs, dtype, rng):
    """tap_tiles on layers its rule picks: more input channels than one depth block,
    output channels over several panels, a ReLU6 epilogue fused into the last pass."""
    from numbaconv import registry

    x, w, b = random(rng, xs, dtype), random(rng, ws, dtype), random(rng, ws[0], dtype)
    assert registry.gemm_kernel(numbaconv.plan(x, w, b, **kwargs).spec) == "tap_tiles"
    check_conv("conv2d", x, w, b, **kwargs, algorithm="gemm", torch=TORCH)
    got = numbaconv.fused_conv2d(x, w, b, **kwargs, activation="relu6", algorithm="gemm")
    want = np.clip(numbaconv.conv2d(x, w, b, **kwargs, algorithm="direct"), 0, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-4 if dtype == np.float32 else 1e-10)


def test_tap_work_counts_the_taps_that_read_inside():
    """DeepLab's dilation-24 layer on a 28x28 map: the middle 20x20 outputs read inside the
    input with the centre tap alone; the planner picks tap_tiles for it and says so."""
    from numbaconv import registry

    x, w = np.empty((1, 2048, 28, 28), np.float32), np.empty((256, 2048, 3, 3), np.float32)
    plan = numbaconv.plan(x, w, padding=24, dilation=24)
    assert plan.algorithm == "gemm" and "padding" in plan.reason
    assert registry.gemm_kernel(plan.spec) == "tap_tiles"
    # corners 4x4 x 4 taps, edges 4x20 x 2 taps, centre 20x20 x 1 tap, of 28x28 x 9
    assert registry.tap_work(plan.spec) == pytest.approx((4 * 16 * 4 + 4 * 80 * 2 + 400)
                                                         / (784 * 9))


def test_winograd_in_training_steps_only_where_the_weight_transform_pays():
    """While weights are new on every call, a 3x3 layer runs Winograd only with enough
    F(4x4) output tiles in all and per image: ResNet-18's 128 -> 128 on 8x8 at batch 8
    does (32 tiles, 4 an image), at batch 2 (8) it does not, nor do 4x4 planes (one
    tile an image) at any batch; outside training steps all three do."""
    from numbaconv import config

    def algorithm(batch, side, channels):
        return numbaconv.plan(np.empty((batch, channels, side, side), np.float32),
                              np.empty((channels, channels, 3, 3), np.float32),
                              padding=1).algorithm

    cases = [(8, 8, 128), (2, 8, 128), (64, 4, 256)]
    assert all(algorithm(*case).startswith("winograd") for case in cases)
    with config.fresh_weights():
        assert [algorithm(*case).startswith("winograd") for case in cases] == \
            [True, False, False]


def test_tap_tiles_in_training_steps_only_where_its_packing_pays():
    """While weights are new on every call (config.fresh_weights), a small map's 3x3 layer
    (ResNet-18's last stage on 64x64 images) runs im2col_whole, which multiplies the
    weights as they are, and DeepLab's dilated layer keeps tap_tiles; both still agree."""
    from numbaconv import config, registry

    small = numbaconv.plan(np.empty((8, 512, 2, 2), np.float32),
                           np.empty((512, 512, 3, 3), np.float32), padding=1).spec
    deeplab = numbaconv.plan(np.empty((8, 2048, 28, 28), np.float32),
                             np.empty((256, 2048, 3, 3), np.float32), padding=24,
                             dilation=24).spec
    assert registry.gemm_kernel(small) == registry.gemm_kernel(deeplab) == "tap_tiles"
    with config.fresh_weights():
        assert registry.gemm_kernel(small) == "im2col_whole"
        assert registry.gemm_kernel(deeplab) == "tap_tiles"
        rng = np.random.default_rng(0)
        x, w = random(rng, (2, 6, 2, 3), np.float64), random(rng, (5, 6, 3, 3), np.float64)
        got = numbaconv.conv2d(x, w, padding=1, algorithm="gemm")
    np.testing.assert_allclose(got, numbaconv.conv2d(x, w, padding=1, algorithm="direct"),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs, ws, groups", [
    ((1, 64, 7, 7), (200, 64, 1, 1), 1),     # few positions, many channels: cut by channels
    ((1, 16, 30, 41), (20, 16, 1, 1), 1),    # many positions: cut by columns, ragged panel
    ((2, 12, 5, 3), (18, 4, 1, 1), 3),       # groups, fewer positions than one vector
    ((5, 40, 6, 6), (7, 40, 1, 1), 1),       # enough images: whole products
])
@pytest.mark.parametrize("threads", [1, 2, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_kernel_every_job_split(rng, xs, ws, groups, threads, dtype):
    """1x1 stride-1 layers multiply the images in place (gemm.pointwise_conv2d), cut into
    blocks of output channels and positions (pointwise_jobs); every cut must give the
    reference result, bias included."""
    from numbaconv.cpu import gemm
    from numbaconv.isa import MR

    x, w, b = random(rng, xs, dtype), random(rng, ws, dtype), random(rng, ws[0], dtype)
    spec = numbaconv.plan(x, w, b, groups=groups).spec
    rows, cols = gemm.pointwise_jobs(spec, x.itemsize, threads)
    assert rows == spec.out_channels_per_group or rows % MR == 0
    if threads == 7 and xs[0] == 1:  # many threads, one image: the product is cut
        assert (rows, cols) != (spec.out_channels_per_group, xs[2] * xs[3])
    positions = xs[2] * xs[3]
    out = np.full((xs[0], ws[0], positions), np.nan, dtype)
    gemm.pointwise_conv2d(x.reshape(xs[0], xs[1], positions), w.reshape(ws[0], ws[1]), b,
                          out, groups, rows, cols, NO_EPILOGUE)
    expected = reference_conv("conv2d", x, w, b, stride=1, padding=0, dilation=1,
                              groups=groups, padding_mode="zeros")
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=tol, atol=tol)
    check_conv("conv2d", x, w, b, groups=groups, algorithm="gemm", torch=TORCH)


@pytest.mark.parametrize("xs, ws, stride, groups", [
    ((1, 32, 13, 11), (40, 32, 1, 1), 2, 1),
    ((2, 16, 9, 14), (24, 8, 1, 1), (3, 2), 2),
    ((3, 20, 5, 5), (18, 20, 1, 1), (1, 4), 1),  # one stride 1, one larger than a row
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_1x1_runs_on_the_pixels_it_reads(rng, xs, ws, stride, groups, dtype):
    """Unpadded strided 1x1 layers: subsampled copy + the pointwise product (gemm)."""
    x, w, b = random(rng, xs, dtype), random(rng, ws, dtype), random(rng, ws[0], dtype)
    if groups == 1 and min(xs[1], ws[0]) >= 16:
        plan = numbaconv.plan(x, w, b, stride=stride)
        assert plan.algorithm == "gemm" and "strided 1x1" in plan.reason
    check_conv("conv2d", x, w, b, stride=stride, groups=groups, algorithm="gemm", torch=TORCH)


@pytest.mark.parametrize("batch, cin, cout, stride", [
    (1, 48, 1152, 1), (8, 1152, 48, 1), (1, 32, 8, 1), (3, 5, 7, 2), (2, 1, 1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_squeeze_and_excitation_1x1_on_1x1_images(rng, batch, cin, cout, stride, dtype, bias):
    """1x1 convolutions of 1x1 images run as dot products (gemm.vector_products)."""
    x = rng.standard_normal((batch, cin, 1, 1)).astype(dtype)
    w = rng.standard_normal((cout, cin, 1, 1)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype) if bias else None
    plan = numbaconv.plan(x, w, b, stride=stride)
    assert plan.algorithm == "gemm" and "dot product" in plan.reason
    check_conv("conv2d", x, w, b, stride=stride, torch=TORCH)
    check_conv("conv2d", x[0], w, b, stride=stride, torch=TORCH)  # unbatched


def test_tiled_direct_kernel_is_the_one_that_runs(monkeypatch):
    """The property test above must exercise the tiled kernel, not the per-channel one."""
    from numbaconv.cpu import direct
    from numbaconv.registry import TILED_MIN_CHANNELS

    def refuse(*args):
        raise AssertionError("the per-channel direct kernel ran")

    monkeypatch.setattr(direct, "direct_conv2d", refuse)
    x = np.ones((1, 2, 9, 9), np.float32)
    tiled = np.ones((TILED_MIN_CHANNELS, 2, 3, 3), np.float32)
    assert numbaconv.plan(x, tiled, algorithm="direct").kernel == "tiled"
    numbaconv.conv2d(x, tiled, algorithm="direct")
    thin = np.ones((TILED_MIN_CHANNELS - 1, 2, 3, 3), np.float32)
    assert numbaconv.plan(x, thin, algorithm="direct").kernel == "channel_rows"
    with pytest.raises(AssertionError, match="per-channel"):
        numbaconv.conv2d(x, thin, algorithm="direct")


def test_tiled_direct_reads_stay_in_its_buffer(rng):
    """The tiles read whole panels of positions from the phase-split input, past the block
    and past the output width; run_tiled's slack must cover the furthest read (modelled
    here as tiled_conv2d addresses it) for every spec, the last image's last block included."""
    from numbaconv.cpu import direct
    from numbaconv.isa import NV, VECTOR_BYTES
    from numbaconv.registry import direct_block_rows

    for _ in range(1500):
        groups, kg = int(rng.choice([1, 2, 3])), int(rng.integers(4, 14))
        cin = int(rng.integers(1, 5))
        kh, kw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        sh, sw, dh, dw = (int(v) for v in rng.integers(1, [4, 4, 3, 3]))
        ph, pw = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        h = int(rng.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 60))
        w = int(rng.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 300))
        dtype = [np.float32, np.float64][int(rng.integers(2))]
        x = np.empty((2, groups * cin, h, w), dtype)
        weight = np.empty((groups * kg, cin, kh, kw), dtype)
        spec = numbaconv.plan(x, weight, stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw),
                              groups=groups).spec
        _, offsets = direct.tiled_operands(spec, weight)
        rows_q, cols_q = -(-spec.padded_height // sh), -(-spec.padded_width // sw)
        channel = sh * sw * rows_q * cols_q
        size = 2 * groups * cin * channel
        panel = NV * (VECTOR_BYTES // x.itemsize)
        block = direct_block_rows(spec)
        for oh0 in range(0, spec.out_height, block):
            n_panels = -(-(min(block, spec.out_height - oh0) * cols_q) // panel)
            base = (2 * groups - 1) * cin * channel + oh0 * cols_q
            furthest = base + n_panels * panel - 1 + offsets.max()
            assert furthest < size + direct.tiled_slack(spec, x.itemsize)


@pytest.mark.parametrize("kernel", ["stacked", "general"])
@pytest.mark.parametrize("stride", [2, (1, 2), (2, 1)])
@pytest.mark.parametrize("size, padding", [((1, 1), 1), ((5, 6), 0), ((7, 7), 1),
                                           ((9, 20), (2, 1)), ((14, 15), 1), ((17, 4), (0, 3))])
def test_depthwise_3x3_strided(rng, torch, size, padding, stride, kernel, monkeypatch):
    """Strided depthwise 3x3 layers: the stacked kernel picks its outputs at the strides;
    past DEPTHWISE_STACKED_ELEMENTS the general depthwise kernel runs instead."""
    from numbaconv import registry

    if kernel == "general":
        monkeypatch.setattr(registry, "DEPTHWISE_STACKED_ELEMENTS", 0)
    h, w = size
    for dtype in (np.float32, np.float64):
        x = random(rng, (3, 4, h, w), dtype)
        check_conv("conv2d", x, random(rng, (4, 1, 3, 3), dtype), random(rng, (4,), dtype),
                   stride=stride, padding=padding, groups=4, algorithm="direct", torch=torch)


@st.composite
def channels_last_depthwise_arguments(draw):
    """Depthwise layers the channels-last kernel runs: planes up to its limit (3x3 stride
    1 only below the stencil's width), at least a vector of channels (16 float32 or 8
    float64 with AVX-512), in whole vectors (32, 64) or with a last partial one (20, 37)."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    reach_h, reach_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    return dict(n=draw(st.integers(1, 3)), channels=draw(st.sampled_from([32, 64, 20, 37])),
                h=draw(st.integers(max(1, reach_h - 2 * padding[0]), 19)),
                w=draw(st.integers(max(1, reach_w - 2 * padding[1]), 45)),
                kernel=(kh, kw), stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                dilation=dilation, padding=padding,
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channels_last_depthwise_arguments())
def test_depthwise_channels_last_kernel(args):
    """direct.depthwise_channels_last: any kernel, stride, dilation and padding; the
    positions past the last whole block of transposes; float64."""
    rng = np.random.default_rng(args["seed"])
    c = args["channels"]
    x = random(rng, (args["n"], c, args["h"], args["w"]), args["dtype"])
    w = random(rng, (c, 1) + args["kernel"], args["dtype"])
    b = random(rng, (c,), args["dtype"])
    check_conv("conv2d", x, w, b, stride=args["stride"], padding=args["padding"],
               dilation=args["dilation"], groups=c, algorithm="direct", torch=TORCH)


def test_depthwise_channels_last_kernel_is_the_one_that_runs(monkeypatch):
    from numbaconv import registry
    from numbaconv.cpu import direct

    def refuse(*args):
        raise AssertionError("channels-last kernel ran")

    monkeypatch.setattr(direct, "depthwise_channels_last", refuse)
    with pytest.raises(AssertionError, match="channels-last"):
        numbaconv.conv2d(np.ones((1, 32, 7, 7), np.float32), np.ones((32, 1, 3, 3), np.float32),
                         groups=32, algorithm="direct")
    with pytest.raises(AssertionError, match="channels-last"):  # 5x5 on a wide image too
        numbaconv.conv2d(np.ones((1, 32, 9, 60), np.float32), np.ones((32, 1, 5, 5), np.float32),
                         groups=32, algorithm="direct")
    with pytest.raises(AssertionError, match="channels-last"):  # a last partial vector
        numbaconv.conv2d(np.ones((1, 20, 7, 7), np.float32), np.ones((20, 1, 3, 3), np.float32),
                         groups=20, algorithm="direct")
    # fewer channels than a vector, 3x3 stride 1 from the stencil's width, and planes
    # beyond the limit take the other kernels
    numbaconv.conv2d(np.ones((1, 6, 7, 7), np.float32), np.ones((6, 1, 3, 3), np.float32),
                     groups=6, algorithm="direct")
    numbaconv.conv2d(np.ones((1, 32, 7, registry.DEPTHWISE_STACKED_BELOW_WIDTH), np.float32),
                     np.ones((32, 1, 3, 3), np.float32), groups=32, algorithm="direct")
    side = int(registry.DEPTHWISE_CHANNELS_LAST_MAX_PLANE ** 0.5) + 1
    numbaconv.conv2d(np.ones((1, 32, side, side), np.float32), np.ones((32, 1, 3, 3), np.float32),
                     stride=2, groups=32, algorithm="direct")


@settings(max_examples=150, deadline=None)
@given(size=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
       pad=st.tuples(st.integers(-3, 4), st.integers(-3, 4)),
       grid=st.tuples(st.integers(1, 12), st.integers(1, 12)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), extra_channels=st.integers(0, 2))
def test_pad_phase_split_against_numpy(size, pad, grid, stride, extra_channels):
    """The padded input split by stride phase, for any padding (negative: cropped), grid
    and stride (1: the whole-plane path), into a buffer with channels past x's (left as
    they were)."""
    from numbaconv.cpu.layout import pad_phase_split
    x = np.random.default_rng(sum(size)).standard_normal(size).astype(np.float32)
    n, c, h, w = size
    (pad_top, pad_left), (sh, sw), (rows_q, cols_q) = pad, stride, grid
    xph = np.full((n, c + extra_channels, sh, sw, rows_q, cols_q), np.nan, np.float32)
    pad_phase_split(x, pad_top, pad_left, xph)
    padded = np.zeros((n, c, rows_q * sh, cols_q * sw), np.float32)
    for i in range(rows_q * sh):
        for j in range(cols_q * sw):
            if 0 <= i - pad_top < h and 0 <= j - pad_left < w:
                padded[:, :, i, j] = x[:, :, i - pad_top, j - pad_left]
    expected = padded.reshape(n, c, rows_q, sh, cols_q, sw).transpose(0, 1, 3, 5, 2, 4)
    np.testing.assert_array_equal(xph[:, :c], expected)
    assert np.isnan(xph[:, c:]).all()
