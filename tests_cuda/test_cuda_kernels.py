"""Every GPU kernel against the NumPy reference (and torch), on tiny shapes."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numbaconv
from helpers import TOLERANCE, WINOGRAD_TOLERANCE, reference_conv, relative_error
from numbaconv.cuda import gemm
from torch_oracle import torch_conv


def run_case(rng, algorithm, x_shape, w_shape, bias=True, dtype=np.float32, op="conv2d",
             torch=None, **kwargs):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    originals = [a.copy() for a in (x, w) + ((b,) if bias else ())]
    args = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros")
    args.update(kwargs)
    conv = numbaconv.conv1d if op == "conv1d" else numbaconv.conv2d
    out = conv(x, w, b, **args, algorithm=algorithm, device="cuda")
    assert isinstance(out, np.ndarray) and out.dtype == dtype
    expected = reference_conv(op, x, w, b, **args)
    assert out.shape == expected.shape
    limit = (WINOGRAD_TOLERANCE if algorithm.startswith("winograd") else TOLERANCE)[
        np.dtype(dtype).name]
    assert relative_error(out, expected) < limit
    for before, after in zip(originals, (x, w) + ((b,) if bias else ())):
        np.testing.assert_array_equal(before, after)  # inputs untouched
    if torch is not None:
        expected_torch = torch_conv(torch, op, x, w, b, **args)
        assert relative_error(out, expected_torch) < limit
    return out


DIRECT_CASES = [
    dict(x_shape=(1, 2, 5, 7), w_shape=(3, 2, 3, 3), padding=1),
    dict(x_shape=(2, 4, 9, 11), w_shape=(4, 2, 3, 2), stride=2, dilation=(1, 2), padding=1,
         groups=2),
    dict(x_shape=(1, 3, 6, 6), w_shape=(3, 1, 3, 3), groups=3, padding="same"),  # depthwise
    dict(x_shape=(1, 2, 10, 35), w_shape=(9, 2, 1, 1), bias=False),  # ragged tile, 2 k-blocks
    dict(x_shape=(1, 1, 9, 9), w_shape=(2, 1, 5, 5), stride=(2, 3), padding=(2, 1)),
    dict(x_shape=(1, 2, 3, 300), w_shape=(2, 2, 1, 2), stride=(1, 140)),  # patch > shared
    dict(x_shape=(1, 2, 6, 5), w_shape=(3, 2, 3, 3), padding=2, padding_mode="reflect"),
    dict(x_shape=(1, 2, 6, 5), w_shape=(3, 2, 3, 3), padding=(1, 3), padding_mode="replicate"),
    dict(x_shape=(1, 2, 6, 5), w_shape=(3, 2, 2, 3), padding=(2, 1), padding_mode="circular"),
    dict(x_shape=(2, 5, 6), w_shape=(3, 2, 3, 3), padding=1, dtype=np.float64),  # unbatched
    dict(x_shape=(2, 4, 17), w_shape=(6, 2, 3), op="conv1d", stride=2, dilation=2, groups=2),
    dict(x_shape=(2, 13), w_shape=(3, 2, 4), op="conv1d", padding="same", dtype=np.float64,
         padding_mode="circular"),
]


@pytest.mark.parametrize("case", DIRECT_CASES, ids=lambda c: "-".join(
    f"{k}={v}" for k, v in c.items() if k not in ("x_shape", "w_shape")) or "plain")
def test_direct(gpu, rng, torch, case):
    run_case(rng, "direct", torch=torch, **case)


WINOGRAD_CASES = [
    dict(x_shape=(1, 2, 5, 7), w_shape=(3, 2, 3, 3), padding=1),  # ragged tiles
    dict(x_shape=(2, 4, 6, 9), w_shape=(4, 2, 3, 3), padding=(0, 1), groups=2, bias=False),
    dict(x_shape=(1, 2, 7, 6), w_shape=(2, 2, 3, 3), padding=1, padding_mode="reflect",
         dtype=np.float64),
]


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=["ragged", "groups-batch", "float64-reflect"])
def test_winograd(gpu, rng, torch, tile, case):
    run_case(rng, f"winograd_f{tile}x{tile}", torch=torch, **case)


def test_batched_matmul_edges(gpu, rng):
    """Rows, columns and depth that are not multiples of the block tile."""
    a = rng.standard_normal((2, 70, 20)).astype(np.float32)
    b = rng.standard_normal((2, 20, 65)).astype(np.float32)
    c = gpu.device_array((2, 70, 65), np.float32)
    gemm.launch_matmul(gpu.to_device(a), gpu.to_device(b), c, "float32", 0)
    np.testing.assert_allclose(c.copy_to_host(), a @ b, rtol=1e-5, atol=1e-4)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_direct_random(gpu, data):
    """Random valid arguments on tiny shapes agree with the reference."""
    draw = data.draw
    groups = draw(st.integers(1, 2))
    cg, kg = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(dilation[0] * (kh - 1) + 1, 8))
    w = draw(st.integers(dilation[1] * (kw - 1) + 1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    run_case(rng, "direct", (1, groups * cg, h, w), (groups * kg, cg, kh, kw),
             bias=draw(st.booleans()), dtype=draw(st.sampled_from([np.float32, np.float64])),
             stride=stride, padding=padding, dilation=dilation, groups=groups)
