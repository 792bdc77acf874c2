"""``Sequential``: modules applied one after another."""

from __future__ import annotations

from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """Runs its modules in order, each on the previous one's output, as
    ``torch.nn.Sequential``. Children are named "0", "1", ... (or by the keys of an
    OrderedDict), so state-dict keys match torch's (``'0.weight'``).

    >>> import numpy as np
    >>> from numbaconv import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 6, 5, rng=0), nn.ReLU(), nn.MaxPool2d(2))
    >>> model(np.zeros((4, 1, 28, 28), np.float32)).shape
    (4, 6, 12, 12)
    >>> list(model.state_dict())
    ['0.weight', '0.bias']
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = list(modules[0].items())
        else:
            items = [(str(i), module) for i, module in enumerate(modules)]
        for name, module in items:
            self._add(name, module)

    def _add(self, name: str, module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: {type(module).__name__} is not a Module subclass")
        setattr(self, name, module)

    def append(self, module: Module) -> "Sequential":
        """Add ``module`` at the end; returns self."""
        self._add(str(len(self)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

    def forward(self, input):
        for module in self:
            input = module(input)
        return input
