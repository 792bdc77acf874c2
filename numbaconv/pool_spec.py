"""Argument checking and shapes for pooling and unpooling (pure Python, torch 2.13's rules).

Like :mod:`numbaconv.spec` for convolutions: the public functions turn their arguments into
a frozen :class:`PoolSpec` of plain ints (2-D geometry; the 1-D functions have a height of
1) and the kernels see nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import _int_tuple, _is_int, exact_argument


@dataclass(frozen=True)
class PoolSpec:
    op: str
    batch: int
    channels: int
    in_height: int
    in_width: int
    kernel: tuple  # (kH, kW)
    stride: tuple
    padding: tuple
    dilation: tuple
    out_height: int
    out_width: int
    batched: bool

    @property
    def output_shape(self) -> tuple:
        spatial = (self.out_width,) if self.op.endswith("1d") else (self.out_height, self.out_width)
        head = (self.batch, self.channels) if self.batched else (self.channels,)
        return head + spatial


def pool_output_size(size, kernel, stride, padding, dilation, ceil_mode) -> int:
    """torch's pooling_output_shape: floor (or ceil) division, and with ceil_mode the last
    window must start inside the input or its left padding."""
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _stride(op: str, stride, kernel: tuple) -> tuple:
    """``stride``, or the kernel size when it is None or empty (torch's default)."""
    if stride is None or (isinstance(stride, (tuple, list)) and not stride):
        return kernel
    return _int_tuple(op, "stride", stride, len(kernel))


def _check_input(op: str, shape: tuple, nsp: int) -> tuple:
    """(batch, channels, spatial..., batched) of a (N, C, ...) or unbatched (C, ...) input."""
    if len(shape) not in (nsp + 1, nsp + 2) or any(s == 0 for s in shape[-(nsp + 1):]):
        raise ValueError(f"{op}: expected a {nsp + 1}D (unbatched) or {nsp + 2}D (batched) input "
                         f"with non-zero dimensions except the batch, but got input of shape "
                         f"{shape}")
    batched = len(shape) == nsp + 2
    full = shape if batched else (1,) + shape
    return full[0], full[1], list(full[2:]), batched


def _bool(op: str, name: str, value) -> bool:
    if not isinstance(value, (bool, int)) or (_is_int(value) and value not in (0, 1)):
        raise TypeError(f"{op}: {name} must be a bool, got {value!r}")
    return bool(value)


def pool_options(op: str, nsp: int, kernel_size, stride, padding, dilation,
                 ceil_mode) -> tuple:
    """(kernel, stride, padding, dilation, ceil_mode) checked and normalised: the rules that
    need no input shape, so the ``numbaconv.nn`` pooling modules apply them when built."""
    kernel = _int_tuple(op, "kernel_size", kernel_size, nsp)
    stride = _stride(op, stride, kernel)
    padding = _int_tuple(op, "padding", padding, nsp)
    dilation = _int_tuple(op, "dilation", dilation, nsp)
    ceil_mode = _bool(op, "ceil_mode", ceil_mode)
    if any(k <= 0 for k in kernel):
        raise ValueError(f"{op}: kernel_size must be greater than zero, got {kernel_size!r}")
    if any(s <= 0 for s in stride):
        raise ValueError(f"{op}: stride must be greater than zero, got {stride}")
    if any(p < 0 for p in padding):
        raise ValueError(f"{op}: padding must be non-negative, got {padding}")
    if any(d <= 0 for d in dilation):
        raise ValueError(f"{op}: dilation must be greater than zero, got {dilation}")
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding should be at most half of kernel_size, got "
                         f"padding={padding} and kernel_size={kernel}")
    return kernel, stride, padding, dilation, ceil_mode


# Repeated calls (a model's pooling layer, batch after batch) reuse the spec checked the
# first time, when every argument is an exact int, str or tuple of ints (as for conv2d).
_REPEATS: dict = {}
_REPEATS_MAX = 256


def pool_spec(op: str, input_shape, kernel_size, stride, padding, dilation,
              ceil_mode) -> PoolSpec:
    """Validate max/avg pooling arguments; ``op`` ends in "1d" or "2d"."""
    repeatable = (all(exact_argument(a) for a in (kernel_size, padding, dilation))
                  and (stride is None or exact_argument(stride)) and type(ceil_mode) is bool)
    if not repeatable:
        return _pool_spec(op, input_shape, kernel_size, stride, padding, dilation, ceil_mode)
    key = (op, tuple(input_shape), kernel_size, stride, padding, dilation, ceil_mode)
    spec = _REPEATS.get(key)
    if spec is None:
        spec = _pool_spec(op, input_shape, kernel_size, stride, padding, dilation, ceil_mode)
        if len(_REPEATS) >= _REPEATS_MAX:
            _REPEATS.clear()
        _REPEATS[key] = spec
    return spec


def _pool_spec(op: str, input_shape, kernel_size, stride, padding, dilation,
               ceil_mode) -> PoolSpec:
    nsp = 1 if op.endswith("1d") else 2
    kernel, stride, padding, dilation, ceil_mode = pool_options(
        op, nsp, kernel_size, stride, padding, dilation, ceil_mode)
    batch, channels, spatial, batched = _check_input(op, tuple(input_shape), nsp)
    out = [pool_output_size(*args, ceil_mode)
           for args in zip(spatial, kernel, stride, padding, dilation)]
    if any(o <= 0 for o in out):
        raise ValueError(f"{op}: given input size {tuple(spatial)}, the calculated output size "
                         f"{tuple(out)} is too small")
    if nsp == 1:
        spatial, out = [1] + spatial, [1] + out
        kernel, stride, padding, dilation = ((1,) + kernel, (1,) + stride, (0,) + padding,
                                             (1,) + dilation)
    return PoolSpec(op=op, batch=batch, channels=channels, in_height=spatial[0],
                    in_width=spatial[1], kernel=kernel, stride=stride, padding=padding,
                    dilation=dilation, out_height=out[0], out_width=out[1], batched=batched)


def divisor(op: str, divisor_override):
    """None, or the non-zero int every average is divided by instead."""
    if divisor_override is None:
        return None
    if not _is_int(divisor_override):
        raise TypeError(f"{op}: divisor_override must be an int or None, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError(f"{op}: divisor_override must be non-zero, got 0")
    return int(divisor_override)


def unpool_spec(op: str, input_shape, indices_shape, kernel_size, stride, padding,
                output_size) -> PoolSpec:
    """Validate max_unpool2d arguments; the spec's "input" is the unpooled output."""
    nsp = 2
    kernel = _int_tuple(op, "kernel_size", kernel_size, nsp)
    stride = _stride(op, stride, kernel)
    padding = _int_tuple(op, "padding", padding, nsp)
    if tuple(indices_shape) != tuple(input_shape):
        raise ValueError(f"{op}: expected indices of the input's shape {tuple(input_shape)}, "
                         f"but got indices of shape {tuple(indices_shape)}")
    batch, channels, spatial, batched = _check_input(op, tuple(input_shape), nsp)
    default = [(s - 1) * st - 2 * p + k for s, st, p, k in zip(spatial, stride, padding, kernel)]
    if output_size is None:
        size = default
    else:
        if not isinstance(output_size, (tuple, list)) or not all(_is_int(v) for v in output_size):
            raise TypeError(f"{op}: output_size must be a tuple of ints, got {output_size!r}")
        size = list(output_size)
        if len(size) == len(input_shape):
            size = size[-nsp:]
        if len(size) != nsp:
            raise ValueError(f"{op}: output_size should be a sequence of {nsp} or "
                             f"{len(input_shape)} elements, but it has a length of "
                             f"{len(output_size)}")
        for d, (got, want, st) in enumerate(zip(size, default, stride)):
            if not want - st < got < want + st:
                raise ValueError(f"{op}: invalid output_size {tuple(output_size)} (dim {d} must "
                                 f"be between {want - st} and {want + st})")
    if any(s <= 0 for s in size):
        raise ValueError(f"{op}: the output size {tuple(size)} is too small")
    return PoolSpec(op=op, batch=batch, channels=channels, in_height=spatial[0],
                    in_width=spatial[1], kernel=kernel, stride=stride, padding=padding,
                    dilation=(1, 1), out_height=size[0], out_width=size[1], batched=batched)
