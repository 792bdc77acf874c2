"""Activation modules: ``ReLU``, ``Sigmoid``, ``Tanh``, ``LeakyReLU``, ``PReLU``, ``RReLU``,
``ReLU6``, ``Hardtanh``, ``Hardswish``, ``Hardsigmoid``, ``SiLU``, ``GELU``, ``Softmax``,
``LogSoftmax``.

``inplace=True`` (where torch has it) writes the result into the input array and
returns it, as torch does; it needs a writable float NumPy array. Without it the input
is never modified.
"""

from __future__ import annotations

import numpy as np

from ..activations import (gelu, hardsigmoid, hardswish, hardtanh, leaky_relu, log_softmax,
                           prelu, relu, relu6, rrelu, sigmoid, silu, softmax, tanh)
from .init import generator
from .module import Module
from .options import check_bool, check_int, check_number, module_dtype
from ..tracing import is_traced


def _store(name: str, input, result):
    """Write ``result`` into ``input`` (inplace=True) and return ``input``."""
    if hasattr(input, "copy_to_device") and input.is_c_contiguous() \
            and input.dtype == result.dtype:  # a Numba device array: a copy on the device
        input.copy_to_device(result)
        return input
    if not (isinstance(input, np.ndarray) and input.flags.writeable
            and input.dtype == result.dtype):
        raise ValueError(f"{name}(inplace=True) needs a writable float32/float64 NumPy array "
                         f"input, got {type(input).__name__}")
    np.copyto(input, result)
    return input


class _Inplace(Module):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = check_bool(type(self).__name__, "inplace", inplace)

    def _result(self, input, result):
        if not self.inplace or is_traced(input):  # (a traced value is never overwritten)
            return result
        return _store(type(self).__name__, input, result)

    def _repr_with_inplace(self, *parts: str) -> str:
        """torch's extra_repr: ``parts``, then ``inplace=True`` when set."""
        return ", ".join(parts + (("inplace=True",) if self.inplace else ()))


class _ElementwiseInplace(_Inplace):
    """An activation with no options but ``inplace``: ``forward`` applies ``_function``."""

    _function = None

    def forward(self, input):
        return self._result(input, type(self)._function(input))

    def extra_repr(self) -> str:
        return self._repr_with_inplace()


class ReLU(_ElementwiseInplace):
    """max(x, 0) element-wise, as ``torch.nn.ReLU``.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.ReLU()(np.array([-1.0, 2.0]))
    array([0., 2.])
    """

    _function = staticmethod(relu)


class Sigmoid(Module):
    """1 / (1 + exp(-x)) element-wise, as ``torch.nn.Sigmoid``."""

    def forward(self, input):
        return sigmoid(input)


class Tanh(Module):
    """tanh element-wise, as ``torch.nn.Tanh``."""

    def forward(self, input):
        return tanh(input)


class LeakyReLU(_Inplace):
    """x where x > 0, else negative_slope * x, as ``torch.nn.LeakyReLU``."""

    def __init__(self, negative_slope=1e-2, inplace=False):
        super().__init__(inplace)
        self.negative_slope = check_number(type(self).__name__, "negative_slope",
                                           negative_slope)

    def forward(self, input):
        return self._result(input, leaky_relu(input, self.negative_slope))

    def extra_repr(self) -> str:
        return self._repr_with_inplace(f"negative_slope={self.negative_slope}")


class PReLU(Module):
    """Leaky ReLU with learnt slopes, as ``torch.nn.PReLU``: ``weight`` holds
    ``num_parameters`` slopes (1, or one per input channel), each starting at ``init``.

    >>> from numbaconv import nn
    >>> nn.PReLU(3).weight
    array([0.25, 0.25, 0.25], dtype=float32)
    """

    def __init__(self, num_parameters=1, init=0.25, *, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.num_parameters = check_int(name, "num_parameters", num_parameters, 1)
        self.init = check_number(name, "init", init)
        self.dtype = module_dtype(name, dtype)
        self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every slope back to ``init``."""
        self.weight = np.full(self.num_parameters, self.init, dtype=self.dtype)

    def forward(self, input):
        return prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class RReLU(_Inplace):
    """Randomised leaky ReLU, as ``torch.nn.RReLU``: in training mode (the default after
    construction, as in torch) each element's negative slope is drawn uniformly from
    [lower, upper] with the module's generator; after :meth:`eval` the slope is
    (lower + upper) / 2.

    Parameters
    ----------
    lower, upper : float
    inplace : bool
    rng : None, int or numpy.random.Generator, keyword only
        Where training-mode slopes come from (a seed makes them reproducible); None:
        numbaconv's default generator at each call (``numbaconv.manual_seed`` seeds it).
    """

    def __init__(self, lower=1.0 / 8, upper=1.0 / 3, inplace=False, *, rng=None):
        super().__init__(inplace)
        name = type(self).__name__
        self.lower = check_number(name, "lower", lower)
        self.upper = check_number(name, "upper", upper)
        if lower > upper:
            raise ValueError(f"{name}: lower bound should be less than or equal to the upper "
                             f"bound, got lower={lower}, upper={upper}")
        self.rng = None if rng is None else generator(rng)

    def forward(self, input):
        return self._result(input, rrelu(input, self.lower, self.upper, self.training,
                                         generator(self.rng)))

    def extra_repr(self) -> str:
        return self._repr_with_inplace(f"lower={self.lower}", f"upper={self.upper}")


class ReLU6(_ElementwiseInplace):
    """min(max(x, 0), 6) element-wise, as ``torch.nn.ReLU6``."""

    _function = staticmethod(relu6)


class Hardtanh(_Inplace):
    """x clipped to [min_val, max_val], as ``torch.nn.Hardtanh``."""

    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__(inplace)
        name = type(self).__name__
        self.min_val = check_number(name, "min_val", min_val)
        self.max_val = check_number(name, "max_val", max_val)
        if min_val > max_val:
            raise ValueError("min_val cannot be greater than max_val")

    def forward(self, input):
        return self._result(input, hardtanh(input, self.min_val, self.max_val))

    def extra_repr(self) -> str:
        return self._repr_with_inplace(f"min_val={self.min_val}", f"max_val={self.max_val}")


class Hardswish(_ElementwiseInplace):
    """x * relu6(x + 3) / 6 element-wise, as ``torch.nn.Hardswish`` (MobileNetV3)."""

    _function = staticmethod(hardswish)


class Hardsigmoid(_ElementwiseInplace):
    """relu6(x + 3) / 6 element-wise, as ``torch.nn.Hardsigmoid``."""

    _function = staticmethod(hardsigmoid)


class SiLU(_ElementwiseInplace):
    """x * sigmoid(x) element-wise, as ``torch.nn.SiLU`` (EfficientNet's swish)."""

    _function = staticmethod(silu)


class GELU(Module):
    """x * Phi(x) element-wise, as ``torch.nn.GELU`` (``approximate='tanh'`` for the tanh
    formula); see :func:`numbaconv.gelu`."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate argument must be either none or tanh, got "
                             f"{approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class _SoftmaxNd(Module):
    _function = None

    def __init__(self, dim=None):
        super().__init__()
        if dim is not None:
            check_int(type(self).__name__, "dim", dim)
        self.dim = dim

    def forward(self, input):
        return type(self)._function(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxNd):
    """exp(x) / sum(exp(x)) along ``dim``, as ``torch.nn.Softmax``.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.Softmax(dim=1)(np.zeros((1, 4)))
    array([[0.25, 0.25, 0.25, 0.25]])
    """

    _function = staticmethod(softmax)


class LogSoftmax(_SoftmaxNd):
    """log(softmax(x)) along ``dim``, computed stably, as ``torch.nn.LogSoftmax``."""

    _function = staticmethod(log_softmax)
