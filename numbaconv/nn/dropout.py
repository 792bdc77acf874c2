"""Dropout modules: ``Dropout`` and ``Dropout2d``, active in training mode only."""

from __future__ import annotations

from ..dropout import _probability, dropout, dropout2d
from .module import Module
from .options import check_bool


class _DropoutNd(Module):
    _function = None

    def __init__(self, p=0.5, inplace=False, *, rng=None):
        super().__init__()
        name = type(self).__name__
        self.p = _probability(name, p)
        self.inplace = check_bool(name, "inplace", inplace)
        self.rng = rng

    def forward(self, input):
        return type(self)._function(input, self.p, self.training, self.inplace, rng=self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zeroes each value with probability ``p`` in training mode (scaling the rest by
    1 / (1 - p)), and passes the input through after :meth:`eval`, as
    ``torch.nn.Dropout``. ``rng`` (numbaconv's addition: a Generator or a seed) draws the
    masks; None uses numbaconv's default generator.

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> drop = nn.Dropout(0.5)
    >>> drop
    Dropout(p=0.5, inplace=False)
    >>> x = np.ones((2, 3))
    >>> bool((drop.eval()(x) == x).all())
    True
    """

    _function = staticmethod(dropout)


class Dropout2d(_DropoutNd):
    """Zeroes whole channels with probability ``p`` in training mode, as
    ``torch.nn.Dropout2d``; see :func:`numbaconv.dropout2d`."""

    _function = staticmethod(dropout2d)
