"""numbaconv.nn.grad: convolution gradients against an independent NumPy reference and
against torch.autograd, for random arguments (strides, paddings incl. 'same' and the
padding modes, dilations, groups incl. depthwise, float32 and float64, batched or not),
both weight-gradient kernels, and the errors for invalid arguments."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TORCH
from helpers import as_pairs, as_tuple
from numbaconv import isa, nn, registry
from reference import NUMPY_PAD_MODE

TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}


# --------------------------------------------------------------------------- reference


def _windows(xp, r, s, dilation, stride, out_size):
    """The padded input values that kernel tap (r, s) reads, one per output position."""
    (dh, dw), (sh, sw), (oh, ow) = dilation, stride, out_size
    return xp[:, :, r * dh:r * dh + sh * (oh - 1) + 1:sh, s * dw:s * dw + sw * (ow - 1) + 1:sw]


def reference_grads(x, w, grad, stride, pads, dilation, groups, padding_mode):
    """(grad_input, grad_weight) of the batched 2-D convolution, in float64, from their
    definitions: each output's gradient times the input value (for the weight) or the
    weight (for the input) that produced it, through np.pad's own index mapping."""
    x, w, grad = (np.asarray(a, np.float64) for a in (x, w, grad))
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    kg = k // groups
    mode = NUMPY_PAD_MODE[padding_mode]
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads), mode=mode)
    out_size = grad.shape[2:]
    grad_w = np.zeros(w.shape)
    grad_xp = np.zeros(xp.shape)
    for r in range(kh):
        for s in range(kw):
            patch = _windows(xp, r, s, dilation, stride, out_size)
            target = _windows(grad_xp, r, s, dilation, stride, out_size)
            for g in range(groups):
                ks, cs = slice(g * kg, (g + 1) * kg), slice(g * cg, (g + 1) * cg)
                grad_w[ks, :, r, s] = np.einsum("nkij,ncij->kc", grad[:, ks], patch[:, cs])
                target[:, cs] += np.einsum("nkij,kc->ncij", grad[:, ks], w[ks, :, r, s])
    # Where each padded position's value came from (np.pad of the indices themselves).
    if padding_mode == "zeros":
        rows = np.pad(np.arange(h), pads[0], constant_values=-1)
        cols = np.pad(np.arange(wd), pads[1], constant_values=-1)
    else:
        rows, cols = np.pad(np.arange(h), pads[0], mode), np.pad(np.arange(wd), pads[1], mode)
    grad_x = np.zeros(x.shape)
    for i, src_i in enumerate(rows):
        for j, src_j in enumerate(cols):
            if src_i >= 0 and src_j >= 0:
                grad_x[:, :, src_i, src_j] += grad_xp[:, :, i, j]
    return grad_x, grad_w


def _check(x, w, grad, kwargs, nsp):
    """Both gradients against the reference, and against torch.autograd when installed."""
    stride = as_tuple(kwargs.get("stride", 1), nsp)
    dilation = as_tuple(kwargs.get("dilation", 1), nsp)
    pads = as_pairs(kwargs.get("padding", 0), w.shape[2:], dilation, nsp)
    mode = kwargs.get("padding_mode", "zeros")
    batched = x.ndim == nsp + 2
    xb, gb = (x, grad) if batched else (x[None], grad[None])
    if nsp == 1:
        xb, wb, gb = xb[:, :, None], w[:, :, None], gb[:, :, None]
        stride, dilation, pads = (1,) + stride, (1,) + dilation, ((0, 0),) + pads
    else:
        wb = w
    want_x, want_w = reference_grads(xb, wb, gb, stride, pads, dilation,
                                     kwargs.get("groups", 1), mode)
    want_x = want_x.reshape(x.shape)
    want_w = want_w.reshape(w.shape)
    input_grad = getattr(nn.grad, f"conv{nsp}d_input")
    weight_grad = getattr(nn.grad, f"conv{nsp}d_weight")
    got_x = input_grad(x.shape, w, grad, **kwargs)
    got_w = weight_grad(x, w.shape, grad, **kwargs)
    tol = TOLERANCE[x.dtype.type]
    for got, want in ((got_x, want_x), (got_w, want_w)):
        assert got.shape == want.shape and got.dtype == x.dtype
        scale = max(1.0, float(np.abs(want).max(initial=0)))
        assert np.abs(got - want).max(initial=0) <= tol * scale * 4
    if TORCH is not None:
        torch_x, torch_w = _torch_grads(x, w, grad, kwargs, nsp)
        for got, want in ((got_x, torch_x), (got_w, torch_w)):
            scale = max(1.0, float(np.abs(want).max(initial=0)))
            assert np.abs(got - want).max(initial=0) <= tol * scale * 4


def _torch_grads(x, w, grad, kwargs, nsp):
    """torch.autograd's gradients of the same convolution (padding modes through the
    nn.Conv module, which is where torch offers them)."""
    torch = TORCH
    tx = torch.from_numpy(x).requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    module = (torch.nn.Conv1d if nsp == 1 else torch.nn.Conv2d)(
        w.shape[1] * kwargs.get("groups", 1), w.shape[0], w.shape[2:], bias=False,
        dtype=tw.dtype, **kwargs)
    with torch.no_grad():
        module.weight.copy_(tw)
    y = module._conv_forward(tx, tw, None)
    gx, gw = torch.autograd.grad(y, (tx, tw), torch.from_numpy(grad))
    return gx.numpy(), gw.numpy()


# --------------------------------------------------------------------------- random cases


@st.composite
def conv_arguments(draw, nsp):
    """A valid convolution (every argument drawn) with random operands and grad_output."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans()) and groups == 1
    cg = 1 if depthwise else draw(st.integers(1, 4))
    channels = draw(st.integers(2, 6)) if depthwise else cg * groups
    groups = channels if depthwise else groups
    kg = draw(st.integers(1, 3))  # output channels per group (a depthwise multiplier)
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nsp))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nsp))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    same = draw(st.integers(0, 4)) == 0 and stride == (1,) * nsp
    sizes = []
    pads = []
    for k, d in zip(kernel, dilation):
        reach = d * (k - 1) + 1
        size = draw(st.integers(max(1, reach - 4), reach + 9))
        limit = size - 1 if mode == "reflect" else size
        pad = draw(st.integers(0, max(0, min(3, limit))))
        if size + 2 * pad < reach:
            pad = -(-(reach - size) // 2)
        sizes.append(size)
        pads.append(pad)
    padding = "same" if same else tuple(pads)
    # The padding each side gets, and the modes that can pad so much (as torch checks).
    amounts = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) if same else (p, p)
               for k, d, p in zip(kernel, dilation, pads)]
    if mode == "reflect" and any(max(a) >= size for a, size in zip(amounts, sizes)):
        mode = "zeros"
    if mode == "circular" and any(max(a) > size for a, size in zip(amounts, sizes)):
        mode = "zeros"
    batch = draw(st.integers(1, 3))
    batched = draw(st.integers(0, 5)) > 0
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                  padding_mode=mode)
    x_shape = ((batch,) if batched else ()) + (channels, *sizes)
    w_shape = (kg * groups, cg, *kernel)
    return x_shape, w_shape, kwargs, dtype, seed


def _run_case(case, nsp):
    x_shape, w_shape, kwargs, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    import numbaconv
    out = (numbaconv.conv1d if nsp == 1 else numbaconv.conv2d)(x, w, **kwargs)
    grad = rng.standard_normal(out.shape).astype(dtype)
    _check(x, w, grad, kwargs, nsp)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_arguments(2))
def test_conv2d_gradients(case):
    _run_case(case, 2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_arguments(1))
def test_conv1d_gradients(case):
    _run_case(case, 1)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_arguments(2))
def test_conv2d_gradients_fuzz(case):
    """The issue's 2,000 random argument sets per op (both gradients of conv2d)."""
    _run_case(case, 2)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_arguments(1))
def test_conv1d_gradients_fuzz(case):
    _run_case(case, 1)


# --------------------------------------------------------------------------- kernels


_KERNEL_CASES = [
    ((3, 12, 15, 17), (20, 12, 3, 3), dict(padding=1)),
    ((2, 7, 23, 21), (10, 7, 3, 2), dict(stride=(2, 3), padding=(2, 1), dilation=(2, 3))),
    ((1, 300, 9, 9), (70, 300, 2, 1), {}),  # rows over several jobs, a ragged tile
    ((3, 20, 7, 9), (30, 20, 1, 1), {}),  # pointwise: the images are the matrices
    ((2, 12, 5, 6), (9, 4, 1, 1), dict(groups=3)),  # grouped pointwise
    ((2, 30, 11, 10), (42, 10, 3, 3), dict(padding=1, groups=3)),  # 10 in, 14 out a group
    ((2, 8, 20, 19), (16, 4, 3, 5), dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1),
                                          groups=2)),
    ((2, 6, 28, 28), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),  # depthwise
    ((2, 70, 9, 8), (70, 1, 3, 2), dict(padding=(2, 1), dilation=(2, 1), groups=70)),
    # fewer input channels than a tile's rows: weight_tiles' rows are one channel's taps
    ((3, 1, 13, 12), (5, 1, 5, 4), dict(padding=2)),
    ((2, 3, 17, 19), (7, 3, 7, 7), dict(stride=2, padding=3)),  # in two column phases
    ((2, 2, 15, 17), (8, 2, 3, 5), dict(stride=(1, 3), dilation=(2, 2), padding=(1, 2))),
    # 3x3 at stride 1 (weight_winograd): unpadded, the last tiles cut in both directions
    ((3, 5, 9, 10), (4, 5, 3, 3), {}),
    ((2, 9, 6, 7), (11, 9, 3, 3), dict(padding=(2, 0))),  # padding other than 1
]
#: What forces each kernel: (WEIGHT_GRAD_TILES_MIN_CHANNELS, WEIGHT_GRAD_LANES_MAX_POSITIONS,
#: WEIGHT_GRAD_PRODUCT_MIN_CHANNELS, WEIGHT_GRAD_DOTS_MAX_BYTES, WINOGRAD_WEIGHT_GRAD_MIN_TILES)
_FORCE = {"weight_tiles": (1, 0, 10**9, 0, 10**9),
          "depthwise_weight_lanes": (10**9, 10**9, 10**9, 0, 10**9),
          "weight_dots": (10**9, 0, 1, 10**9, 10**9), "weight_products": (10**9, 0, 1, 0, 10**9),
          "weight_taps": (10**9, 0, 10**9, 0, 10**9), "weight_winograd": (1, 0, 10**9, 0, 0)}


def _runs(kernel, w_shape, kwargs):
    """Whether ``kernel`` can run the case: weight_winograd 3x3 ungrouped layers at stride
    and dilation 1, weight_tiles ungrouped layers with more than one tap,
    depthwise_weight_lanes one channel in and out per group."""
    if kernel == "weight_winograd":
        return w_shape[2:] == (3, 3) and not {"groups", "stride", "dilation"} & set(kwargs)
    if kernel == "weight_tiles":
        return "groups" not in kwargs and w_shape[2] * w_shape[3] > 1
    depthwise = kwargs.get("groups", 1) == w_shape[0] and w_shape[1] == 1
    if kernel == "depthwise_weight_lanes":
        return depthwise
    if kernel == "weight_dots":
        return not depthwise
    return True


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, x_shape, w_shape, kwargs",
                         [(k, *case) for k in _FORCE for case in _KERNEL_CASES
                          if _runs(k, case[1], case[2])])
def test_every_weight_kernel(kernel, x_shape, w_shape, kwargs, dtype, rng, monkeypatch):
    """Each weight-gradient kernel forced onto every case it can run: weight_products
    with one image per im2col chunk, each chunk's product added onto the last;
    weight_tiles with jobs of the fewest positions (64), channels and output channels
    padded to whole tiles; depthwise_weight_lanes on a ragged last block of channels;
    weight_winograd one image per chunk, each chunk's products added onto the last."""
    tiles, lanes, products, dots, winograd_tiles = _FORCE[kernel]
    monkeypatch.setattr(registry, "WINOGRAD_WEIGHT_GRAD_MIN_TILES", winograd_tiles)
    monkeypatch.setattr(registry, "WINOGRAD_WEIGHT_GRAD_MIN_DEPTH", 0)
    monkeypatch.setattr(registry, "WINOGRAD_WEIGHT_GRAD_CHUNK_BYTES", 1)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_MIN_CHANNELS", tiles)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_NARROW_CHANNELS", 0)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_MIN_POSITIONS", 1)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_MIN_TAP_FILL", 0 if tiles == 1 else 2)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_LANES_MAX_POSITIONS", lanes)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_PRODUCT_MIN_CHANNELS", products)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_DOTS_MAX_BYTES", dots)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_UNFOLD_BYTES", 1)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_CHUNK_BYTES", 1)
    import numbaconv
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    grad = rng.standard_normal(numbaconv.conv2d(x, w, **kwargs).shape).astype(dtype)
    spec = numbaconv.plan(x, w, **kwargs).spec
    assert registry.weight_grad_kernel(spec) == kernel
    _check(x, w, grad, kwargs, 2)


@settings(max_examples=200, deadline=None)
@given(channels=st.integers(1, 13), kernel=st.tuples(st.integers(1, 7), st.integers(1, 9)),
       stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_weight_tiles_rows_are_every_weight_once(channels, kernel, stride, dilation):
    """weight_tiles' plan: the weights' rows in order, MR a tile, each weight one row,
    reading its tap's run of inputs (its start in the phase-split input); only the last
    tile has rows without a weight, and those read the last weight's run (in bounds)."""
    import numbaconv
    from numbaconv.cpu.layout import phase_split_shape
    from numbaconv.cpu.weight_grad import _tap_starts, tile_plan
    from numbaconv.isa import MR
    size = [d * (k - 1) + s * 3 for k, s, d in zip(kernel, stride, dilation)]
    spec = numbaconv.plan(np.empty((1, channels, *size), np.float32),
                          np.empty((4, channels, *kernel), np.float32), stride=stride,
                          dilation=dilation).spec
    starts, index = tile_plan(spec)
    taps = kernel[0] * kernel[1]
    weights = channels * taps
    assert starts.shape == index.shape == (-(-weights // MR), MR)
    assert index.size == registry.weight_tile_rows(spec)
    assert list(index.reshape(-1)[:weights]) == list(range(weights))
    assert (index.reshape(-1)[weights:] == -1).all()
    channel_size = np.prod(phase_split_shape(spec)[2:])
    tap_starts = _tap_starts(spec).reshape(-1)
    flat = starts.reshape(-1)
    for row in range(weights):
        c, t = divmod(row, taps)
        assert flat[row] == c * channel_size + tap_starts[t]
    assert (flat[weights:] == flat[weights - 1]).all()
    wide = phase_split_shape(spec)[5]
    last_read = flat + (spec.out_height - 1) * wide + spec.out_width - 1
    assert last_read.max() < channels * channel_size  # inside the image's input


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((3, 20, 7, 9), (30, 20, 1, 1), {}),  # fewer input than output channels: x's rows first
    ((4, 16, 5, 6), (32, 4, 1, 1), dict(groups=4)),
    ((5, 40, 3, 3), (70, 40, 1, 1), {}),
    ((2, 40, 4, 5), (24, 40, 1, 1), {}),  # more input than output channels: grad's first
    ((2, 300, 3, 50), (20, 300, 1, 1), {}),  # depth blocks of 256, ragged panels and tiles
    ((3, 48, 2, 2), (18, 24, 1, 1), dict(groups=2))])
def test_pointwise_weight_products_in_place(x_shape, w_shape, kwargs, dtype, rng, monkeypatch):
    """A pointwise layer's weight gradient multiplies every image's rows in place, one
    launch summing the images, the side with fewer channels a group giving the
    product's rows (the result transposed when that is the input's); against the
    references."""
    monkeypatch.setattr(registry, "WEIGHT_GRAD_DOTS_MAX_BYTES", 0)
    import numbaconv
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    spec = numbaconv.plan(x, w, **kwargs).spec
    assert registry.weight_grad_kernel(spec) == "weight_products"
    assert registry.weight_grad_chunk_images(spec) == 1
    grad = rng.standard_normal(numbaconv.conv2d(x, w, **kwargs).shape).astype(dtype)
    _check(x, w, grad, kwargs, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("unfold_bytes", [1, 1 << 30])  # an image per chunk, or all at once
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((3, 12, 2, 3), (40, 12, 3, 3), dict(padding=1)),  # 18 positions, 40 channels
    ((2, 8, 3, 2), (36, 4, 3, 2), dict(padding=(1, 0), groups=2)),
    ((2, 6, 5, 7), (40, 6, 3, 3), dict(stride=2, dilation=(1, 2), padding=2)),
    ((2, 4, 9, 9), (40, 2, 2, 2), dict(groups=2)),  # 8 taps x channels, 20 outputs a group
    ((2, 6, 5, 7), (8, 6, 3, 3), dict(padding=1))])  # 70 positions, 8 channels
def test_weight_products_by_chunks(x_shape, w_shape, kwargs, unfold_bytes, dtype, rng,
                                   monkeypatch):
    """weight_products on the im2col matrix, by chunks of one image (each chunk's product
    added onto the last, the gradient's rows a view) or all at once (its images copied
    side by side), either side giving the product's rows; against the references."""
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_NARROW_CHANNELS", 0)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_LANES_MAX_POSITIONS", 0)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_PRODUCT_MIN_CHANNELS", 1)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_DOTS_MAX_BYTES", 0)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_UNFOLD_BYTES", unfold_bytes)
    import numbaconv
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    spec = numbaconv.plan(x, w, **kwargs).spec
    assert registry.weight_grad_kernel(spec) == "weight_products"
    assert (registry.weight_grad_chunk_images(spec) == 1) == (unfold_bytes == 1)
    grad = rng.standard_normal(numbaconv.conv2d(x, w, **kwargs).shape).astype(dtype)
    _check(x, w, grad, kwargs, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("unfold_bytes, in_place_from", [(1, 1), (1, 10**9), (1 << 30, 10**9)])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((3, 20, 7, 9), (30, 20, 1, 1), {}),  # pointwise: x's own rows, or side by side
    ((2, 26, 9, 10), (26, 2, 3, 3), dict(padding=1, groups=13)),  # 2 in, 2 out a group
    ((2, 30, 11, 10), (42, 10, 3, 3), dict(padding=1, groups=3)),  # ragged 4 x 4 tiles
    ((3, 1, 28, 28), (6, 1, 5, 5), dict(padding=2)),  # LeNet's first layer: shifted rows
    ((3, 3, 13, 12), (5, 3, 3, 4), dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1))),
    ((2, 2, 8, 9), (3, 2, 2, 3), dict(padding="same", dilation=(1, 2))),  # uneven padding
    ((2, 4, 9, 9), (40, 2, 2, 2), dict(groups=2)),  # more output channels than taps a group
    ((2, 8, 20, 19), (16, 4, 3, 5), dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1),
                                          groups=2))])
def test_weight_dots(x_shape, w_shape, kwargs, unfold_bytes, in_place_from, dtype, rng,
                     monkeypatch):
    """weight_dots, the rows of the gradient against the im2col matrix's (or a pointwise
    layer's input in place, or, ungrouped, the rows each tap reads in the padded input
    in place): an image per chunk (views, each chunk added onto the last)
    or all at once (copied side by side), passes of a few elements along the rows,
    against the references."""
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_NARROW_CHANNELS", 0)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_TILES_MIN_TAP_FILL", 2)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_DOTS_MAX_BYTES", 10**9)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_DOTS_HELD_BYTES", 8 * 300)  # passes of 256
    monkeypatch.setattr(registry, "WEIGHT_GRAD_UNFOLD_BYTES", unfold_bytes)
    monkeypatch.setattr(registry, "WEIGHT_GRAD_IN_PLACE_MIN_POSITIONS", in_place_from)
    import numbaconv
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    spec = numbaconv.plan(x, w, **kwargs).spec
    assert registry.weight_grad_kernel(spec) == "weight_dots"
    grad = rng.standard_normal(numbaconv.conv2d(x, w, **kwargs).shape).astype(dtype)
    _check(x, w, grad, kwargs, 2)


@settings(max_examples=60, deadline=None)
@given(groups=st.integers(1, 3), rows=st.integers(1, 9), cols=st.integers(1, 9),
       depth=st.integers(1, 150), row_block=st.integers(64, 100), workers=st.integers(1, 5),
       accumulate=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_row_dots_against_numpy(groups, rows, cols, depth, row_block, workers, accumulate,
                                seed):
    """row_dots: every (group, row, column) sum, ragged tiles and passes, added onto out
    or written over it; nothing written past the output."""
    from numbaconv.cpu.row_dots import row_dots
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((groups * rows, depth))
    b = rng.standard_normal((groups * cols, depth))
    start = rng.standard_normal((groups, rows, cols))
    guarded = np.full(start.size + 8, np.nan)
    out = guarded[:start.size].reshape(start.shape)
    out[...] = start
    row_dots(a, b, out, row_block, accumulate, workers=workers)
    expected = np.einsum("gip,gjp->gij", a.reshape(groups, rows, depth),
                         b.reshape(groups, cols, depth))
    np.testing.assert_allclose(out, expected + start if accumulate else expected, rtol=1e-12,
                               atol=1e-12)
    assert np.isnan(guarded[start.size:]).all()


@pytest.mark.parametrize("depth, kg, groups, threads", [
    (256, 1024, 1, 2), (16, 64, 1, 2), (16, 8, 1, 4), (300, 70, 1, 3), (36, 30, 4, 2),
    (5, 3, 1, 8), (1152, 256, 1, 16)])
def test_weight_product_blocks_cover_the_product(depth, kg, groups, threads):
    """Jobs of whole panels and tiles (or the whole side), as many as the threads where
    the product has tiles and panels enough, every row and column in exactly one job."""
    from numbaconv import isa
    from numbaconv.registry import product_blocks

    rows, cols = product_blocks(depth, kg, groups, threads, 4)
    panel = isa.NV * isa.VECTOR_BYTES // 4
    assert 0 < rows <= depth and 0 < cols <= kg
    assert rows == depth or rows % isa.MR == 0
    assert cols == kg or cols % panel == 0
    jobs = groups * -(-depth // rows) * -(-kg // cols)
    assert jobs >= min(threads, groups * max(1, kg // panel) * -(-depth // isa.MR)) or \
        groups >= threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((4, 30, 2, 2), (40, 30, 3, 3), dict(padding=1)),  # a small map, more taps than pixels
    ((2, 9, 3, 4), (20, 9, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    ((1, 6, 5, 5), (50, 6, 5, 5), dict(stride=2, padding=2)),
    ((3, 7, 2, 3), (11, 7, 1, 1), dict(stride=3)),  # strided 1x1: outputs no pixel reaches
    ((2, 70, 3, 3), (40, 70, 3, 3), dict(padding=1)),  # input channels over 3 scatter blocks
])
def test_input_gradient_positions_major_in_training_steps(x_shape, w_shape, kwargs, dtype, rng,
                                                          monkeypatch):
    """While weights are fresh (a training step), the input gradient of an ungrouped layer
    with fewer pixels of gradient than weight rows runs positions-major (the weights as
    they are, the gradient transposed, a scatter per plane); against the references."""
    import numbaconv
    from numbaconv import config, transposed

    calls = []
    original = transposed._positions_major
    monkeypatch.setattr(transposed, "_positions_major",
                        lambda *args: calls.append(1) or original(*args))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    grad = rng.standard_normal(numbaconv.conv2d(x, w, **kwargs).shape).astype(dtype)
    with config.fresh_weights():
        _check(x, w, grad, kwargs, 2)
    assert calls


def test_positions_major_transposed_convolution_adds_its_bias(rng, monkeypatch):
    """conv_transpose2d with a bias while weights are fresh runs positions-major, whose
    scatter starts each of its planes at the bias (channels over three scatter blocks);
    against the same call with weights not fresh, which runs another path."""
    import numbaconv
    from numbaconv import config, transposed

    calls = []
    original = transposed._positions_major
    monkeypatch.setattr(transposed, "_positions_major",
                        lambda *args: calls.append(1) or original(*args))
    x = rng.standard_normal((2, 40, 2, 3)).astype(np.float32)
    w = rng.standard_normal((40, 70, 3, 3)).astype(np.float32)
    b = rng.standard_normal(70).astype(np.float32)
    expected = numbaconv.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
    assert not calls
    with config.fresh_weights():
        got = numbaconv.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
    assert calls
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((8, 72, 1, 1), (288, 72, 1, 1), {}), ((3, 5, 1, 1), (7, 5, 1, 1), dict(stride=2)),
    ((1, 4, 1), (6, 4, 1), {}),
    ((2, 300, 1, 1), (5, 300, 1, 1), {})])  # columns over two blocks, the last ragged
def test_squeeze_and_excitation_gradients(x_shape, w_shape, kwargs, dtype, rng):
    """1x1 layers on 1x1 images: both gradients are sums of a few outer products
    (``cpu.outer``: terms in fours and a remainder, blocks of columns); against the
    references."""
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    assert nn.grad.plan_weight(x.shape, w.shape, **kwargs)["kernel"] == "outer_products"
    grad = rng.standard_normal(x_shape[:1] + w_shape[:1] + x_shape[2:]).astype(dtype)
    _check(x, w, grad, kwargs, len(x_shape) - 2)


@pytest.mark.parametrize("channels", [1, 6, 24, 58, 72, 88, 576, 1152])
@pytest.mark.parametrize("threads", [1, 2, 3, 16])
def test_depthwise_lane_blocks_share_the_channels(channels, threads):
    """Whole vectors of channels, at most DEPTHWISE_LANE_BLOCK, and no thread left more
    than a vector of channels short of its share when there are vectors enough."""
    from numbaconv import isa

    block = registry.depthwise_lane_block(channels, threads, 4)
    assert block % isa.lanes(4) == 0 and 0 < block <= registry.DEPTHWISE_LANE_BLOCK
    jobs = -(-channels // block)
    if channels >= threads * registry.DEPTHWISE_LANE_BLOCK:
        assert jobs >= threads
    if jobs >= threads and jobs % threads == 0:  # even shares
        assert channels - (jobs - 1) * block > 0


def test_which_layers_take_which_weight_kernel():
    import numbaconv
    x = np.empty((1, 32, 8, 8), np.float32)
    depthwise = numbaconv.plan(x, np.empty((32, 1, 3, 3), np.float32), groups=32).spec
    grouped = numbaconv.plan(x, np.empty((64, 4, 3, 3), np.float32), groups=8).spec
    dense = numbaconv.plan(np.empty((1, 32, 32, 32), np.float32),
                           np.empty((64, 32, 3, 3), np.float32), padding=1).spec
    dense_small = numbaconv.plan(x, np.empty((64, 32, 3, 3), np.float32), padding=1).spec
    tiny = numbaconv.plan(x[..., :4, :4], np.empty((64, 32, 3, 3), np.float32)).spec
    wide = numbaconv.plan(np.empty((1, 32, 112, 112), np.float32),
                          np.empty((32, 1, 3, 3), np.float32), groups=32).spec
    assert registry.weight_grad_kernel(depthwise) == "depthwise_weight_lanes"
    assert registry.weight_grad_kernel(wide) == "weight_taps"
    assert registry.weight_grad_kernel(grouped) == "weight_dots"  # 8 output channels a group
    wide_groups = numbaconv.plan(np.empty((1, 256, 8, 8), np.float32),
                                 np.empty((256, 128, 3, 3), np.float32), groups=2).spec
    assert registry.weight_grad_kernel(wide_groups) == "weight_products"
    assert registry.weight_grad_kernel(dense) == "weight_tiles"  # 32 -> 64: Winograd loses
    assert registry.weight_grad_kernel(dense_small) == "weight_products"  # 8x8 outputs
    assert registry.weight_grad_kernel(tiny) == "weight_products"  # 2x2 outputs
    narrow = numbaconv.plan(x, np.empty((32, 32, 3, 3), np.float32), padding=1).spec
    assert registry.weight_grad_kernel(narrow) == "weight_tiles"  # 32 outputs, any plane
    strided = numbaconv.plan(np.empty((1, 32, 32, 32), np.float32),
                             np.empty((64, 32, 3, 3), np.float32), stride=2, padding=1).spec
    assert registry.weight_grad_kernel(strided) != "weight_winograd"  # stride 1 only
    thin = numbaconv.plan(np.empty((1, 8, 32, 32), np.float32),
                          np.empty((64, 8, 3, 3), np.float32), padding=1).spec
    assert registry.weight_grad_kernel(thin) != "weight_winograd"  # 8 input channels
    one_channel = numbaconv.plan(x[:, :1], np.empty((16, 1, 5, 5), np.float32), padding=2).spec
    assert registry.weight_grad_kernel(one_channel) == "weight_tiles"  # 25 weights, 30 rows
    # LeNet's 6 output channels fill 6 of 8 lanes (AVX2), but only 6 of 16 (AVX-512)
    lenet = numbaconv.plan(x[:, :1], np.empty((6, 1, 5, 5), np.float32), padding=2).spec
    assert (registry.weight_grad_kernel(lenet) == "weight_tiles") == (isa.lanes(4) == 8)
    colours = numbaconv.plan(x[:, :3], np.empty((64, 3, 3, 3), np.float32), padding=1).spec
    assert registry.weight_grad_kernel(colours) == "weight_tiles"  # 27 weights, 30 rows
    stem = numbaconv.plan(np.empty((8, 3, 64, 64), np.float32),
                          np.empty((64, 3, 7, 7), np.float32), stride=2, padding=3).spec
    assert registry.weight_grad_kernel(stem) == "weight_tiles"  # 147 weights, 150 rows


def test_small_planes_take_weight_tiles_while_their_partial_sums_stay_small(monkeypatch):
    """Planes under 32x32 take weight_tiles where each thread's partial sums stay about
    L2-sized, the output channels fill whole panels and there are jobs for every core
    (ResNet-18's 64 -> 64 on 16x16 at batch 8; not 256 -> 256, nor at batch 1, nor 96
    output channels with AVX-512's 64-lane panels)."""
    import numbaconv
    from numbaconv import config
    monkeypatch.setattr(config, "CPU_COUNT", 2)

    def kernel(batch, c, k, side):
        return registry.weight_grad_kernel(numbaconv.plan(
            np.empty((batch, c, side, side), np.float32),
            np.empty((k, c, 3, 3), np.float32), padding=1).spec)

    monkeypatch.setattr(registry, "WINOGRAD_WEIGHT_GRAD_MIN_TILES", 10**9)  # (it goes first)
    assert kernel(8, 64, 64, 16) == kernel(8, 128, 128, 8) == "weight_tiles"
    assert kernel(8, 256, 256, 8) == "weight_products"  # 2.4 MB of partial sums
    assert kernel(1, 64, 64, 16) == "weight_products"  # one job
    assert kernel(8, 64, 64, 7) == "weight_products"  # 49 positions
    assert (kernel(8, 32, 96, 28) == "weight_tiles") == (96 % (isa.NV * isa.lanes(4)) == 0)
    monkeypatch.setattr(config, "CPU_COUNT", 16)
    assert kernel(8, 64, 64, 16) == "weight_products"  # 8 jobs for 16 cores


def test_weight_products_side_shares_the_tiles_and_counts_the_transpose():
    """weight_products takes the im2col side's rows where the gradient's would leave one
    thread far more register tiles (DenseNet's 160 -> 128 1x1: 160 columns cut at 128
    and 32), never where the saving is smaller than transposing the result (ResNet-18's
    512 -> 512 on 2x2 at batch 8: 32 positions); the side with fewer rows otherwise."""
    import numbaconv

    def im2col_rows(x_shape, w_shape, threads, **kwargs):
        spec = numbaconv.plan(np.empty(x_shape, np.float32), np.empty(w_shape, np.float32),
                              **kwargs).spec
        assert registry.weight_grad_kernel(spec) == "weight_products"
        return registry.weight_rows_from_im2col(spec, threads)

    assert im2col_rows((8, 160, 56, 56), (128, 160, 1, 1), 2)
    assert not im2col_rows((8, 160, 56, 56), (128, 160, 1, 1), 1)  # one job: fewer rows
    assert not im2col_rows((8, 512, 2, 2), (512, 512, 3, 3), 2, padding=1)
    assert im2col_rows((8, 64, 28, 28), (256, 64, 1, 1), 2)  # fewer rows, even shares
    panel = isa.NV * isa.lanes(4)
    for rows, cols in [(64, 147), (128, 160), (512, 4608), (7, 9)]:
        work = registry._product_share_work(rows, cols, 1, 2, 4)
        padded = -(-rows // isa.MR) * isa.MR * (-(-cols // panel) * panel)
        assert padded // 2 <= work <= padded  # a share of all of it, at least half


def test_inputs_are_not_modified(rng):
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    grad = rng.standard_normal((2, 6, 9, 9)).astype(np.float32)
    copies = [a.copy() for a in (x, w, grad)]
    nn.grad.conv2d_input(x.shape, w, grad, padding=1, padding_mode="reflect")
    nn.grad.conv2d_weight(x, w.shape, grad, padding=1, padding_mode="circular")
    for a, b in zip((x, w, grad), copies):
        np.testing.assert_array_equal(a, b)


def test_empty_batch_gives_zeros():
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    grad = np.zeros((0, 4, 3, 3), np.float32)
    assert nn.grad.conv2d_input(x.shape, w, grad).shape == x.shape
    np.testing.assert_array_equal(nn.grad.conv2d_weight(x, w.shape, grad), np.zeros(w.shape))


# --------------------------------------------------------------------------- errors


def test_grad_output_of_the_wrong_shape_is_rejected():
    x, w = np.ones((1, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"conv2d_input: grad_output must have the shape .*"
                                         r"\(1, 4, 6, 6\)"):
        nn.grad.conv2d_input(x.shape, w, np.ones((1, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match="conv2d_weight: grad_output"):
        nn.grad.conv2d_weight(x, w.shape, np.ones((1, 5, 6, 6), np.float32))


@pytest.mark.parametrize("call, error, match", [
    (lambda: nn.grad.conv2d_input(7, np.ones((4, 3, 3, 3)), np.ones((1, 4, 6, 6))),
     TypeError, "conv2d_input: input_size must be a sequence of ints"),
    (lambda: nn.grad.conv2d_input((1, 3, 8, -8), np.ones((4, 3, 3, 3)), np.ones((1, 4, 6, 6))),
     ValueError, "input_size must hold non-negative ints"),
    (lambda: nn.grad.conv2d_weight(np.ones((1, 3, 8, 8)), (4, 2, 3, 3), np.ones((1, 4, 6, 6))),
     ValueError, "conv2d_weight: given groups=1"),
    (lambda: nn.grad.conv2d_weight(np.ones((1, 3, 8, 8)), (4, 3, 3, 3), np.ones((1, 4, 6, 6)),
                                   stride=0),
     ValueError, "conv2d_weight: .*stride"),
    (lambda: nn.grad.conv1d_weight(np.ones((1, 3, 8)), (4, 3, 3), np.ones((1, 4, 6)),
                                   padding="same", stride=2),
     ValueError, "conv1d_weight: .*same"),
    (lambda: nn.grad.conv2d_input((1, 3, 8, 8), "w", np.ones((1, 4, 6, 6))),
     TypeError, "conv2d_input: weight must be a float32 or float64 array"),
    (lambda: nn.grad.conv2d_weight(np.ones((1, 3, 8, 8), np.int64), (4, 3, 3, 3),
                                   np.ones((1, 4, 6, 6))),
     TypeError, "conv2d_weight: input"),
])
def test_invalid_arguments_are_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_winograd_weight_gradient_takes_3x3_layers_with_tiles_enough(monkeypatch):
    """weight_winograd for 3x3 stride-1 layers with >= 32 output tiles over the batch
    and channels enough (ResNet-18's 64 -> 64 on 16x16 and 128 -> 128 on 8x8 at batch
    8), not 256 -> 256 on 4x4 (8 tiles) nor 32 -> 32, and never where one image's
    transforms would outgrow the cap."""
    import numbaconv

    def kernel(batch, c, k, side):
        return registry.weight_grad_kernel(numbaconv.plan(
            np.empty((batch, c, side, side), np.float32),
            np.empty((k, c, 3, 3), np.float32), padding=1).spec)

    assert kernel(8, 64, 64, 16) == kernel(8, 128, 128, 8) == "weight_winograd"
    assert kernel(8, 256, 256, 4) != "weight_winograd"
    assert kernel(1, 64, 64, 16) != "weight_winograd"  # 16 tiles
    assert kernel(8, 48, 48, 28) == "weight_winograd"  # 48 * 48 / (48 + 96) = 16
    assert kernel(8, 32, 32, 28) != "weight_winograd"  # 32 * 32 / (32 + 64) < 16
    monkeypatch.setattr(registry, "WINOGRAD_WEIGHT_GRAD_MAX_IMAGE_BYTES", 1 << 20)
    assert kernel(8, 64, 64, 16) == "weight_winograd"  # 0.6 MB an image
    assert kernel(8, 64, 64, 32) != "weight_winograd"  # 2.4 MB
