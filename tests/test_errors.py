"""Invalid arguments: numbaconv raises ValueError/TypeError where torch rejects them."""

import numpy as np
import pytest

import numbaconv
from conftest import TORCH
from torch_oracle import torch_conv

X = np.zeros((2, 4, 5, 5), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)

INVALID_2D = [
    # (description, input, weight, bias, kwargs, expected exception)
    ("5-D input", np.zeros((1, 2, 4, 5, 5), np.float32), W, None, {}, ValueError),
    ("2-D input", np.zeros((4, 5), np.float32), W, None, {}, ValueError),
    ("3-D weight", X, np.zeros((6, 4, 3), np.float32), None, {}, ValueError),
    ("channel mismatch", X, np.zeros((6, 3, 3, 3), np.float32), None, {}, ValueError),
    ("groups do not divide C_in", X, np.zeros((6, 1, 3, 3), np.float32), None,
     dict(groups=3), ValueError),
    ("groups do not divide C_out", X, np.zeros((5, 2, 3, 3), np.float32), None,
     dict(groups=2), ValueError),
    ("zero output channels", X, np.zeros((0, 4, 3, 3), np.float32), None, {}, ValueError),
    ("groups = 0", X, W, None, dict(groups=0), ValueError),
    ("groups < 0", X, W, None, dict(groups=-2), ValueError),
    ("groups float", X, W, None, dict(groups=1.0), TypeError),
    ("stride = 0", X, W, None, dict(stride=0), ValueError),
    ("stride < 0", X, W, None, dict(stride=(1, -1)), ValueError),
    ("stride float", X, W, None, dict(stride=2.0), TypeError),
    ("stride bool", X, W, None, dict(stride=True), TypeError),
    ("stride of 3", X, W, None, dict(stride=(1, 1, 1)), ValueError),
    ("stride empty", X, W, None, dict(stride=()), ValueError),
    ("dilation = 0", X, W, None, dict(dilation=0), ValueError),
    ("dilation tuple of 3", X, W, None, dict(dilation=(1, 1, 1)), ValueError),
    ("negative padding", X, W, None, dict(padding=-1), ValueError),
    ("negative padding in tuple", X, W, None, dict(padding=(1, -1)), ValueError),
    ("padding of 4", X, W, None, dict(padding=(1, 1, 1, 1)), ValueError),
    ("padding float", X, W, None, dict(padding=1.0), TypeError),
    ("unknown padding string", X, W, None, dict(padding="full"), ValueError),
    ("upper-case padding string", X, W, None, dict(padding="SAME"), ValueError),
    ("'same' with stride 2", X, W, None, dict(padding="same", stride=2), ValueError),
    ("kernel larger than input", X, np.zeros((6, 4, 6, 6), np.float32), None, {}, ValueError),
    ("dilated kernel larger than input", X, W, None, dict(dilation=3), ValueError),
    ("zero-size kernel", X, np.zeros((6, 4, 0, 3), np.float32), None, {}, ValueError),
    ("zero height input", np.zeros((2, 4, 0, 5), np.float32), W, None, dict(padding=2),
     ValueError),
    ("bias of wrong length", X, W, np.zeros(5, np.float32), {}, ValueError),
    ("2-D bias", X, W, np.zeros((6, 1), np.float32), {}, ValueError),
    ("0-D bias", X, W, np.float32(1.0), {}, ValueError),
    ("reflect padding = size", X, W, None, dict(padding=5, padding_mode="reflect"), ValueError),
    ("reflect padding > height", np.zeros((2, 4, 3, 9), np.float32), W, None,
     dict(padding=3, padding_mode="reflect"), ValueError),
    ("circular padding > size", X, W, None, dict(padding=6, padding_mode="circular"), ValueError),
    ("reflect with no channels", np.zeros((2, 0, 5, 5), np.float32),
     np.zeros((6, 0, 3, 3), np.float32), None, dict(padding=1, padding_mode="reflect"), ValueError),
    ("unknown padding_mode", X, W, None, dict(padding=1, padding_mode="mirror"), ValueError),
    ("padding after mode still too small", np.zeros((1, 4, 3, 3), np.float32),
     np.zeros((6, 4, 7, 7), np.float32), None, dict(padding=1, padding_mode="reflect"),
     ValueError),
]


@pytest.mark.parametrize("desc, x, w, b, kwargs, exc", INVALID_2D, ids=[c[0] for c in INVALID_2D])
def test_invalid_conv2d_arguments(desc, x, w, b, kwargs, exc):
    with pytest.raises(exc, match="conv2d"):
        numbaconv.conv2d(x, w, b, **kwargs)
    with pytest.raises(exc, match="conv2d"):
        numbaconv.plan(x, w, b, **kwargs)
    if TORCH is not None:
        args = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | kwargs
        result = torch_conv(TORCH, "conv2d", x, w, b, **args)
        assert isinstance(result, Exception), f"torch accepts {desc}"


INVALID_1D = [
    ("4-D input", np.zeros((1, 2, 3, 9), np.float32), np.zeros((2, 2, 1), np.float32), {},
     ValueError),
    ("padding tuple of 2", np.zeros((1, 2, 9), np.float32), np.zeros((2, 2, 3), np.float32),
     dict(padding=(1, 1)), ValueError),
    ("stride tuple of 2", np.zeros((1, 2, 9), np.float32), np.zeros((2, 2, 3), np.float32),
     dict(stride=(2, 2)), ValueError),
    ("dilation 0", np.zeros((1, 2, 9), np.float32), np.zeros((2, 2, 3), np.float32),
     dict(dilation=0), ValueError),
    ("kernel longer than input", np.zeros((1, 2, 2), np.float32), np.zeros((2, 2, 3), np.float32),
     {}, ValueError),
]


@pytest.mark.parametrize("desc, x, w, kwargs, exc", INVALID_1D, ids=[c[0] for c in INVALID_1D])
def test_invalid_conv1d_arguments(desc, x, w, kwargs, exc):
    with pytest.raises(exc, match="conv1d"):
        numbaconv.conv1d(x, w, **kwargs)
    if TORCH is not None:
        args = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") | kwargs
        assert isinstance(torch_conv(TORCH, "conv1d", x, w, None, **args), Exception)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64, np.float16,
                                   object])
def test_non_float_arrays_are_a_type_error(dtype):
    x = np.zeros((1, 1, 4, 4), dtype)
    with pytest.raises(TypeError, match=r"astype\(np.float32\)"):
        numbaconv.conv2d(x, np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(TypeError, match="weight"):
        numbaconv.conv2d(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 3, 3), dtype))
    with pytest.raises(TypeError, match="bias"):
        numbaconv.conv2d(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 3, 3), np.float32),
                         np.zeros(1, dtype))


def test_error_messages_name_parameter_value_and_allowed_set():
    with pytest.raises(ValueError, match=r"padding_mode must be one of .*'zeros'.*got padding_mode='mirror'"):
        numbaconv.conv2d(X, W, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"invalid padding string 'full'.*'valid', 'same'"):
        numbaconv.conv2d(X, W, padding="full")
    with pytest.raises(ValueError, match=r"stride.*\(1, 0\)"):
        numbaconv.conv2d(X, W, stride=(1, 0))
    with pytest.raises(ValueError, match=r"unknown algorithm='fft'; expected one of .*'auto'"):
        numbaconv.conv2d(X, W, algorithm="fft")
