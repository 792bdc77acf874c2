"""``Sequential``: modules applied one after another."""

from __future__ import annotations

from collections import OrderedDict

from ..spec import _is_int
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

    def extend(self, modules) -> "Sequential":
        """Append each module of the iterable ``modules`` (another Sequential, a list...)."""
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> "Sequential":
        """Insert ``module`` before position ``index`` (negative counts from the end, as
        list.insert but out-of-range is an IndexError, as torch); the modules are then
        renumbered "0", "1", ...; returns self.

        >>> from numbaconv import nn
        >>> nn.Sequential(nn.ReLU(), nn.Tanh()).insert(1, nn.Sigmoid())
        Sequential(
          (0): ReLU()
          (1): Sigmoid()
          (2): Tanh()
        )
        """
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.insert: {type(module).__name__} is not a Module "
                            f"subclass")
        n = len(self)
        if not _is_int(index) or not -n <= index <= n:
            raise IndexError(f"Index out of range: {index}")
        modules = list(self._modules.values())
        modules.insert(index + n if index < 0 else index, module)
        self._renumber(modules)
        return self

    def pop(self, index) -> Module:
        """Remove the module at ``index`` and return it."""
        module = self[index]
        del self[index]
        return module

    def _renumber(self, modules) -> None:
        # torch numbers a Sequential's children again after a deletion or an insertion.
        self._modules.clear()
        for i, module in enumerate(modules):
            self._modules[str(i)] = module

    def _key(self, index) -> str:
        keys = list(self._modules)
        if not _is_int(index):
            raise TypeError(f"Sequential indices must be integers or slices, got "
                            f"{type(index).__name__}")
        if not -len(keys) <= index < len(keys):
            raise IndexError(f"index {index} is out of range")
        return keys[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return self._modules[self._key(index)]

    def __setitem__(self, index, module) -> None:
        self._add(self._key(index), module)

    def __delitem__(self, index) -> None:
        if isinstance(index, slice):
            keys = list(self._modules)[index]
        else:
            keys = [self._key(index)]
        self._renumber([m for k, m in self._modules.items() if k not in keys])

    def forward(self, input):
        for module in self:
            input = module(input)
        return input
