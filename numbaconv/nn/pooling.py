"""Pooling modules: ``MaxPool1d/2d``, ``AvgPool1d/2d``, ``MaxUnpool2d``,
``AdaptiveAvgPool1d/2d``, ``AdaptiveMaxPool2d``.

Options are kept as given (``MaxPool2d(2).stride == 2``), like torch, and checked when
the module is built; ``forward`` calls the functional API.
"""

from __future__ import annotations

from ..pool_spec import _stride, divisor, pool_options
from ..pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool2d,
                       avg_pool1d, avg_pool2d, max_pool1d, max_pool2d, max_unpool2d)
from ..spec import _int_tuple
from .module import Module
from .options import check_bool


def _window_repr(module) -> str:
    """torch's extra_repr of AvgPool1d/2d and MaxUnpool2d."""
    return f"kernel_size={module.kernel_size}, stride={module.stride}, padding={module.padding}"


class _MaxPoolNd(Module):
    _dims = 2
    _function = None

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        name = type(self).__name__
        pool_options(name, self._dims, kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices = check_bool(name, "return_indices", return_indices)
        self.ceil_mode = ceil_mode

    def forward(self, input):
        """The pooled input, and the int64 indices of the maxima with ``return_indices``."""
        # (all by position: a keyword makes a traced call bind its signature, ~15 us)
        return self._function(input, self.kernel_size, self.stride, self.padding, self.dilation,
                              self.ceil_mode, self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """1-D max pooling, as ``torch.nn.MaxPool1d``; see :func:`numbaconv.max_pool1d`."""

    _dims = 1
    _function = staticmethod(max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """2-D max pooling, as ``torch.nn.MaxPool2d``; see :func:`numbaconv.max_pool2d`.

    Note torch's argument order: ``return_indices`` comes before ``ceil_mode`` here (the
    functional form has them the other way round).

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.MaxPool2d(2)
    MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    >>> nn.MaxPool2d(2)(np.ones((1, 3, 8, 8))).shape
    (1, 3, 4, 4)
    """

    _function = staticmethod(max_pool2d)


class AvgPool2d(Module):
    """2-D average pooling, as ``torch.nn.AvgPool2d``; see :func:`numbaconv.avg_pool2d`.

    >>> from numbaconv import nn
    >>> nn.AvgPool2d(2)
    AvgPool2d(kernel_size=2, stride=2, padding=0)
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        name = type(self).__name__
        pool_options(name, 2, kernel_size, stride, padding, 1, ceil_mode)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad = check_bool(name, "count_include_pad", count_include_pad)
        self.divisor_override = divisor(name, divisor_override)

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)

    extra_repr = _window_repr


class AvgPool1d(Module):
    """1-D average pooling, as ``torch.nn.AvgPool1d``; see :func:`numbaconv.avg_pool1d`.
    Options are stored as 1-tuples, as torch stores them."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        name = type(self).__name__
        kernel, stride, padding, _, ceil_mode = pool_options(name, 1, kernel_size, stride,
                                                             padding, 1, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = check_bool(name, "count_include_pad", count_include_pad)

    def forward(self, input):
        return avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad)

    extra_repr = _window_repr


class MaxUnpool2d(Module):
    """Inverse of ``MaxPool2d``, as ``torch.nn.MaxUnpool2d``; see
    :func:`numbaconv.max_unpool2d`. ``forward(input, indices, output_size=None)``.

    >>> from numbaconv import nn
    >>> nn.MaxUnpool2d(2)
    MaxUnpool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _int_tuple(name, "kernel_size", kernel_size, 2)
        self.stride = _stride(name, stride, self.kernel_size)
        self.padding = _int_tuple(name, "padding", padding, 2)
        if any(k <= 0 for k in self.kernel_size) or any(s <= 0 for s in self.stride):
            raise ValueError(f"{name}: kernel_size and stride must be positive, got "
                             f"kernel_size={self.kernel_size}, stride={self.stride}")
        if any(p < 0 for p in self.padding):
            raise ValueError(f"{name}: padding must be non-negative, got {self.padding}")

    def forward(self, input, indices, output_size=None):
        return max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding,
                            output_size)

    extra_repr = _window_repr


class _AdaptivePool(Module):
    _function = None

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return type(self)._function(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool):
    """Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``
    (``AdaptiveAvgPool2d(1)``: global average pooling, as in ResNet's head); see
    :func:`numbaconv.adaptive_avg_pool2d`.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.AdaptiveAvgPool2d((1, 1))(np.ones((2, 512, 7, 7))).shape
    (2, 512, 1, 1)
    """

    _function = staticmethod(adaptive_avg_pool2d)


class AdaptiveAvgPool1d(_AdaptivePool):
    """1-D average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool1d``."""

    _function = staticmethod(adaptive_avg_pool1d)


class AdaptiveMaxPool2d(_AdaptivePool):
    """Max pooling to a fixed output size, as ``torch.nn.AdaptiveMaxPool2d`` (with
    ``return_indices`` also the int64 positions of the maxima)."""

    def __init__(self, output_size, return_indices=False):
        super().__init__(output_size)
        self.return_indices = check_bool(type(self).__name__, "return_indices",
                                         return_indices)

    def forward(self, input):
        return adaptive_max_pool2d(input, self.output_size, self.return_indices)
