"""``Linear`` and ``Flatten``: the fully connected end of a CNN."""

from __future__ import annotations

import math

import numpy as np

from ..activations import linear
from .init import default_weight_and_bias, generator
from .module import Module
from .options import check_bool, check_int, module_dtype
from ..tracing import as_array


class Linear(Module):
    """y = x W^T + b, as ``torch.nn.Linear``; ``forward`` is :func:`numbaconv.linear`.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    dtype : float32 (default) or float64, keyword only
    rng : None, int or numpy.random.Generator, keyword only
        Source of torch's default initialisation: weight and bias uniform in
        ±1/sqrt(in_features).

    Attributes
    ----------
    weight : numpy.ndarray (out_features, in_features)
    bias : numpy.ndarray (out_features,) or None

    Shapes: input (*, in_features), output (*, out_features).

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> fc = nn.Linear(400, 120, rng=0)
    >>> fc
    Linear(in_features=400, out_features=120, bias=True)
    >>> fc(np.ones((8, 400), np.float32)).shape
    (8, 120)
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=None, rng=None):
        super().__init__()
        name = type(self).__name__
        self.in_features = check_int(name, "in_features", in_features, 0)
        self.out_features = check_int(name, "out_features", out_features, 0)
        self._has_bias = check_bool(name, "bias", bias)
        self.dtype = module_dtype(name, dtype)
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None) -> None:
        """Draw weight and bias as torch does, from ``rng`` (None, a seed or a Generator)."""
        self.weight, self.bias = default_weight_and_bias(
            (self.out_features, self.in_features),
            (self.out_features,) if self._has_bias else None, generator(rng), self.dtype)

    def forward(self, input):
        return linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Flatten(Module):
    """Flattens axes ``start_dim`` to ``end_dim`` into one, as ``torch.nn.Flatten``
    (default: everything but the batch axis). Returns a view of the input where NumPy can.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> nn.Flatten()(np.zeros((8, 16, 5, 5))).shape
    (8, 400)
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        name = type(self).__name__
        self.start_dim = check_int(name, "start_dim", start_dim)
        self.end_dim = check_int(name, "end_dim", end_dim)

    def forward(self, input):
        x = as_array(input)  # (a traced input stays traced)
        ndim = max(x.ndim, 1)  # a 0-d input flattens to 1-D, as in torch
        start, end = (_axis("start_dim", d, ndim) for d in (self.start_dim, self.end_dim))
        if start > end:
            raise ValueError(f"Flatten: start_dim ({self.start_dim}) cannot come after end_dim "
                             f"({self.end_dim}) for a {x.ndim}-D input")
        shape = x.shape if x.ndim else (1,)
        return x.reshape(shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


def _axis(name: str, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"Flatten: {name}={axis} is out of range for a {ndim}-D input "
                         f"(expected in [{-ndim}, {ndim - 1}])")
    return axis % ndim


class Identity(Module):
    """Returns its input unchanged, as ``torch.nn.Identity`` (any constructor arguments
    are accepted and ignored, as torch does): a placeholder, e.g. for a removed head.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> x = np.ones(3)
    >>> nn.Identity(54, unused="argument")(x) is x
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input
