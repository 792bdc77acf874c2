"""Convolution modules: ``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d``.

Each holds torch's attributes (``in_channels``, ``kernel_size`` as a tuple, ...), checks
its options when built (the shape-free rules of :mod:`numbaconv.spec`, with torch's
messages for the channel/groups rules), and calls the functional API in ``forward``.
"""

from __future__ import annotations

from ..functional import conv1d, conv2d
from ..spec import (_int_tuple, conv_options, conv_transpose_options,
                    output_padding_for, resolve_padding)
from ..transposed import conv_transpose1d, conv_transpose2d
from .init import default_weight_and_bias, generator
from .module import Module
from .options import check_bool, check_int, module_dtype


class _ConvNd(Module):
    _dims = 2
    _function = None
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, padding_mode, output_padding, dtype, rng, algorithm):
        super().__init__()
        name, nsp = type(self).__name__, self._dims
        in_channels = check_int(name, "in_channels", in_channels, 1)
        out_channels = check_int(name, "out_channels", out_channels, 1)
        kernel = _int_tuple(name, "kernel_size", kernel_size, nsp)
        if any(k <= 0 for k in kernel):
            raise ValueError(f"{name}: kernel_size must be positive, got {kernel_size!r}")
        if self._transposed:
            if padding_mode != "zeros":
                raise ValueError(f'Only "zeros" padding mode is supported for {name}')
            stride, padding, output_padding, dilation, groups = conv_transpose_options(
                name, nsp, stride, padding, output_padding, dilation, groups)
        else:
            stride, dilation, groups = conv_options(name, nsp, stride, dilation, groups,
                                                    padding_mode)
            resolve_padding(name, padding, kernel, dilation, stride)  # the string/stride rules
            if not isinstance(padding, str):
                padding = _int_tuple(name, "padding", padding, nsp)
            output_padding = (0,) * nsp
        if in_channels % groups:
            raise ValueError(f"{name}: in_channels must be divisible by groups, got "
                             f"in_channels={in_channels}, groups={groups}")
        if out_channels % groups:
            raise ValueError(f"{name}: out_channels must be divisible by groups, got "
                             f"out_channels={out_channels}, groups={groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        self.dilation, self.output_padding, self.groups = dilation, output_padding, groups
        self.padding_mode = padding_mode
        self.transposed = self._transposed
        self.algorithm = algorithm
        self.dtype = module_dtype(name, dtype)
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        self._has_bias = check_bool(name, "bias", bias)
        self.reset_parameters(rng)

    @property
    def _weight_shape(self) -> tuple:
        """(out, in / groups, *kernel); transposed: (in, out / groups, *kernel), as torch."""
        first, second = ((self.in_channels, self.out_channels) if self._transposed
                         else (self.out_channels, self.in_channels))
        return (first, second // self.groups) + self.kernel_size

    def reset_parameters(self, rng=None) -> None:
        """Draw weight and bias as torch does (kaiming-uniform, a=sqrt(5); bias in
        ±1/sqrt(fan_in)) from ``rng`` (None, a seed or a ``numpy.random.Generator``)."""
        self.weight, self.bias = default_weight_and_bias(
            self._weight_shape, (self.out_channels,) if self._has_bias else None,
            generator(rng), self.dtype)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        nsp = self._dims
        if self.padding != (0,) * nsp:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * nsp:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * nsp:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.algorithm != "auto":
            s += f", algorithm={self.algorithm}"
        return s


class _Conv(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", *, dtype=None, rng=None,
                 algorithm="auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, 0, dtype, rng, algorithm)

    def forward(self, input):
        return self._function(input, self.weight, self.bias, self.stride, self.padding,
                              self.dilation, self.groups, self.padding_mode,
                              algorithm=self.algorithm)


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros", *,
                 dtype=None, rng=None, algorithm="auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, output_padding, dtype, rng, algorithm)

    def forward(self, input, output_size=None):
        """``output_size`` (spatial sizes, or the full output shape) picks the output padding
        when several output sizes are possible (stride > 1), as in torch."""
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = output_padding_for(type(self).__name__, getattr(input, "shape", ()),
                                                output_size, self.kernel_size, self.stride,
                                                self.padding, self.dilation)
        return self._function(input, self.weight, self.bias, self.stride, self.padding,
                                    output_padding, self.groups, self.dilation,
                                    algorithm=self.algorithm)


_DOC = """{what}, as ``torch.nn.{name}``: ``forward`` is :func:`numbaconv.{function}`.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, {options} : int or tuple of {n} ints
    groups : int
        Must divide both channel counts.
    bias : bool
        Whether to learn an additive bias (``bias`` is None otherwise).{extra}
    dtype : float32 (default) or float64, keyword only
    rng : None, int or numpy.random.Generator, keyword only
        Source of the initial weights: torch's default initialisation (kaiming-uniform
        with a=sqrt(5); bias uniform in ±1/sqrt(fan_in)).
    algorithm : str, keyword only
        The convolution algorithm (``'auto'``; see :func:`numbaconv.conv2d`).

    Attributes
    ----------
    weight : numpy.ndarray, {weight}
    bias : numpy.ndarray (out_channels,) or None

    Shapes: input (N, in_channels, {sp}) or unbatched; output (N, out_channels, ...).

    Examples
    --------
    >>> import numpy as np
    >>> from numbaconv import nn
    >>> layer = nn.{name}({example}, rng=0)
    >>> layer
    {repr}
    >>> layer(np.ones({example_in}, np.float32)).shape
    {example_out}
"""

_CONV_EXTRA = """
    padding_mode : 'zeros', 'reflect', 'replicate' or 'circular'"""


class Conv1d(_Conv):
    _dims = 1
    _function = staticmethod(conv1d)


class Conv2d(_Conv):
    _function = staticmethod(conv2d)


class ConvTranspose1d(_ConvTranspose):
    _dims = 1
    _function = staticmethod(conv_transpose1d)


class ConvTranspose2d(_ConvTranspose):
    _function = staticmethod(conv_transpose2d)


Conv1d.__doc__ = _DOC.format(
    what="1-D convolution", name="Conv1d", function="conv1d", n=1,
    options="padding (also 'same'/'valid'), dilation", extra=_CONV_EXTRA,
    weight="(out_channels, in_channels / groups, kL)", sp="L", example="3, 8, 5",
    repr="Conv1d(3, 8, kernel_size=(5,), stride=(1,))", example_in="(2, 3, 20)",
    example_out="(2, 8, 16)")
Conv2d.__doc__ = _DOC.format(
    what="2-D convolution", name="Conv2d", function="conv2d", n=2,
    options="padding (also 'same'/'valid'), dilation", extra=_CONV_EXTRA,
    weight="(out_channels, in_channels / groups, kH, kW)", sp="H, W",
    example="3, 8, 3, padding=1", repr="Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), "
    "padding=(1, 1))", example_in="(2, 3, 16, 16)", example_out="(2, 8, 16, 16)")
ConvTranspose1d.__doc__ = _DOC.format(
    what="1-D transposed convolution", name="ConvTranspose1d", function="conv_transpose1d",
    n=1, options="padding, output_padding, dilation", extra="",
    weight="(in_channels, out_channels / groups, kL)", sp="L", example="4, 2, 3, stride=2",
    repr="ConvTranspose1d(4, 2, kernel_size=(3,), stride=(2,))", example_in="(1, 4, 10)",
    example_out="(1, 2, 21)")
ConvTranspose2d.__doc__ = _DOC.format(
    what="2-D transposed convolution", name="ConvTranspose2d", function="conv_transpose2d",
    n=2, options="padding, output_padding, dilation", extra="",
    weight="(in_channels, out_channels / groups, kH, kW)", sp="H, W",
    example="4, 2, 2, stride=2", repr="ConvTranspose2d(4, 2, kernel_size=(2, 2), "
    "stride=(2, 2))", example_in="(1, 4, 8, 8)", example_out="(1, 2, 16, 16)")
