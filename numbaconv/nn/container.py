"""Containers: ``Sequential`` (modules applied one after another), ``ModuleList`` and
``ModuleDict``."""

from __future__ import annotations

from collections import OrderedDict

from .._dask_dispatch import is_dask_array
from ..spec import _is_int
from .module import Module, _indent


class _ModuleSequence(Module):
    """Children named "0", "1", ... with Python list methods, renumbered (as torch does)
    after an insertion or a deletion."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def _add(self, name: str, module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: {type(module).__name__} is not a Module "
                            f"subclass")
        self.add_module(name, module)

    def append(self, module: Module):
        """Add ``module`` at the end; returns self."""
        self._add(str(len(self)), module)
        return self

    def extend(self, modules):
        """Append each module of the iterable ``modules``; returns self."""
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module):
        """Insert ``module`` before position ``index`` (negative counts from the end, as
        list.insert; out of range is an IndexError, as torch), then renumber; returns
        self.

        >>> from numbaconv import nn
        >>> nn.Sequential(nn.ReLU(), nn.Tanh()).insert(1, nn.Sigmoid())
        Sequential(
          (0): ReLU()
          (1): Sigmoid()
          (2): Tanh()
        )
        """
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}.insert: {type(module).__name__} is not a "
                            f"Module subclass")
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
        self._modules.clear()
        for i, module in enumerate(modules):
            self._modules[str(i)] = module

    def _key(self, index) -> str:
        keys = list(self._modules)
        if not _is_int(index):
            raise TypeError(f"{type(self).__name__} indices must be integers or slices, got "
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
            return self._from_items(list(self._modules.items())[index])
        return self._modules[self._key(index)]

    def _from_items(self, items):
        """A container of the same kind holding the (name, module) ``items``."""
        raise NotImplementedError

    def __setitem__(self, index, module) -> None:
        self._add(self._key(index), module)

    def __delitem__(self, index) -> None:
        if isinstance(index, slice):
            keys = list(self._modules)[index]
        else:
            keys = [self._key(index)]
        self._renumber([m for k, m in self._modules.items() if k not in keys])


class Sequential(_ModuleSequence):
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
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            super().__init__()
            for name, module in modules[0].items():
                self._add(name, module)
        else:
            super().__init__(modules)

    def _from_items(self, items):
        return Sequential(OrderedDict(items))  # torch keeps the names of a slice

    def forward(self, input):
        if is_dask_array(input):  # runs of layers as one graph each: numbaconv.dask_arrays
            from ..dask_arrays import sequential

            return sequential(self, input)
        for module in self:
            input = module(input)
        return input


class ModuleList(_ModuleSequence):
    """A list of modules, registered as children "0", "1", ... (so their parameters are
    the model's), as ``torch.nn.ModuleList``; it has no ``forward`` of its own.

    >>> from numbaconv import nn
    >>> blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
    >>> blocks
    ModuleList(
      (0-2): 3 x Linear(in_features=4, out_features=4, bias=True)
    )
    >>> len(list(blocks.parameters()))
    6
    """

    def __init__(self, modules=None):
        super().__init__(() if modules is None else modules)

    def _from_items(self, items):
        return ModuleList([module for _, module in items])

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other) -> "ModuleList":
        return ModuleList(list(self) + list(other))

    def __repr__(self) -> str:
        # torch's: runs of identical children in one line, "(0-2): 3 x Linear(...)".
        blocks = []  # [first index, last index, repr]
        for i, module in enumerate(self):
            text = repr(module)
            if blocks and blocks[-1][2] == text:
                blocks[-1][1] = i
            else:
                blocks.append([i, i, text])
        if not blocks:
            return "ModuleList()"
        lines = [_indent(f"({a}): {text}" if a == b else f"({a}-{b}): {b - a + 1} x {text}")
                 for a, b, text in blocks]
        return "ModuleList(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """Modules by name, registered as children under their keys, as ``torch.nn.ModuleDict``
    (insertion order kept); it has no ``forward`` of its own.

    >>> from numbaconv import nn
    >>> heads = nn.ModuleDict({"cls": nn.Linear(8, 10), "box": nn.Linear(8, 4)})
    >>> list(heads.state_dict())
    ['cls.weight', 'cls.bias', 'box.weight', 'box.bias']
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: {type(module).__name__} is not a Module subclass")
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key) -> bool:
        return key in self._modules

    def clear(self) -> None:
        self._modules.clear()

    def pop(self, key: str) -> Module:
        return self._modules.pop(key)

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def update(self, modules) -> None:
        """Add modules from a mapping or an iterable of (key, module) pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for entry in items:
            try:
                key, module = entry
            except (TypeError, ValueError):
                raise TypeError(f"ModuleDict.update: expected (key, module) pairs, got "
                                f"{entry!r}") from None
            self[key] = module
