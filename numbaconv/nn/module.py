"""The module base class: parameters, children, state dicts, train/eval, repr.

A small, NumPy-only counterpart of ``torch.nn.Module``. Parameters are plain NumPy
arrays registered by name; child modules assigned as attributes are registered too, so a
user-defined model::

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 5)
            self.fc = nn.Linear(6 * 24 * 24, 10)

        def forward(self, x):
            return self.fc(numbaconv.relu(self.conv(x)).reshape(len(x), -1))

has the state-dict keys ``conv.weight``, ``conv.bias``, ``fc.weight``, ``fc.bias`` that
the same model written in torch has, and loads torch's trained weights directly.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, NamedTuple

import numpy as np

from .. import devices
from ..spec import check_float_array, check_float_dtype


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` returns: keys the model has that the state dict
    lacked, and keys of the state dict the model does not have."""

    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of every layer and model; subclasses define :meth:`forward`.

    Attributes
    ----------
    training : bool
        True after construction and :meth:`train`, False after :meth:`eval`; only layers
        that behave differently when training (``RReLU``) read it.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration

    def register_parameter(self, name: str, value) -> None:
        """Register ``value`` (a float32/float64 array, or None for an absent parameter such
        as ``bias=False``) under ``name``, so that state dicts include it."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameters before Module.__init__() call")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"parameter name must be a non-empty string without '.', got {name!r}")
        self._parameters[name] = _as_parameter(type(self).__name__, name, value)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register the array ``tensor`` (any numeric dtype: running statistics, integer
        counters; or None) under ``name``: state that is not a parameter. A persistent
        buffer is part of :meth:`state_dict` and loaded by :meth:`load_state_dict`; a
        non-persistent one only lives on the module. Reassigning ``module.name = array``
        replaces it.

        >>> import numpy as np
        >>> from numbaconv import nn
        >>> m = nn.Module()
        >>> m.register_buffer("steps", np.array(0, np.int64))
        >>> m.register_buffer("cache", np.zeros(3), persistent=False)
        >>> list(m.state_dict()), [name for name, _ in m.named_buffers()]
        (['steps'], ['steps', 'cache'])
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._check_new_name("buffer", name, self._buffers)
        if not isinstance(persistent, bool):
            raise TypeError(f"register_buffer: persistent must be a bool, got {persistent!r}")
        self._buffers[name] = _as_buffer(name, tensor)
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module) -> None:
        """Register ``module`` (a Module, or None) as the child ``name``, as ``setattr``
        does but with torch's checks of the name (``register_module`` is the same)."""
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_new_name("module", name, self._modules)
        self._modules[name] = module

    register_module = add_module

    def _check_new_name(self, kind: str, name, registry) -> None:
        """torch's rules for the name of a new buffer or child: a non-empty string without
        '.', not already an attribute of another kind (re-registering one is fine)."""
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string. Got {type(name).__name__}")
        if "." in name:
            raise KeyError(f'{kind} name can\'t contain ".", got: {name}')
        if name == "":
            raise KeyError(f'{kind} name can\'t be empty string ""')
        taken = (name in self._parameters or name in self._buffers or name in self._modules
                 or name in self.__dict__)
        if name not in registry and taken:
            raise KeyError(f"attribute '{name}' already exists")

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() call")
        if isinstance(value, Module):
            self.__dict__.pop(name, None)
            self._parameters.pop(name, None)
            self._modules[name] = value
        elif name in self._parameters:
            self._parameters[name] = _as_parameter(type(self).__name__, name, value)
        elif name in self.__dict__.get("_buffers", {}):
            self._buffers[name] = _as_buffer(name, value)
        elif name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} "
                                f"(a Module or None is expected)")
            self._modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: parameters and children live in dicts.
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry, {})
            if name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    # ------------------------------------------------------------------ calling

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal

    def named_children(self) -> Iterator[tuple]:
        for name, child in self._modules.items():
            if child is not None:
                yield name, child

    def children(self) -> Iterator["Module"]:
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "") -> Iterator[tuple]:
        """This module and every descendant, with dotted names ('' for this one)."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self) -> Iterator[tuple]:
        """(dotted name, array) for every parameter that is not None, in registration order."""
        return self._named_entries("_parameters")

    def parameters(self) -> Iterator[np.ndarray]:
        for _, value in self.named_parameters():
            yield value

    def named_buffers(self) -> Iterator[tuple]:
        """(dotted name, array) for every buffer that is not None, persistent or not."""
        return self._named_entries("_buffers")

    def _named_entries(self, registry: str) -> Iterator[tuple]:
        for prefix, module in self.named_modules():
            for name, value in module.__dict__[registry].items():
                if value is not None:
                    yield (f"{prefix}.{name}" if prefix else name), value

    def buffers(self) -> Iterator[np.ndarray]:
        for _, value in self.named_buffers():
            yield value

    def get_submodule(self, target: str) -> "Module":
        """The descendant named by the dotted path ``target`` ('' for this module).

        >>> from numbaconv import nn
        >>> model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)), nn.ReLU())
        >>> model.get_submodule("0.0")
        Linear(in_features=2, out_features=2, bias=True)
        """
        if not isinstance(target, str):
            raise TypeError(f"get_submodule: target must be a str, got {target!r}")
        module = self
        if target == "":
            return module
        for item in target.split("."):
            child = module._modules.get(item)
            if not isinstance(child, Module):
                if item in module._modules or hasattr(module, item):
                    raise AttributeError(f"`{item}` is not an nn.Module")
                raise AttributeError(f"{type(module).__name__} has no attribute `{item}`")
            module = child
        return module

    def get_parameter(self, target: str) -> np.ndarray:
        """The parameter named by the dotted path ``target`` (``'0.weight'``)."""
        return self._get_entry(target, "_parameters", "an nn.Parameter")

    def get_buffer(self, target: str) -> np.ndarray:
        """The buffer named by the dotted path ``target`` (``'bn.running_mean'``)."""
        return self._get_entry(target, "_buffers", "a buffer")

    def _get_entry(self, target, registry, kind):
        if not isinstance(target, str):
            raise TypeError(f"target must be a str, got {target!r}")
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        entries = module.__dict__[registry]
        if name not in entries:
            if hasattr(module, name):
                raise AttributeError(f"`{name}` is not {kind}")
            raise AttributeError(f"{type(module).__name__} has no attribute `{name}`")
        return entries[name]

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every descendant (children first, as torch) and then on
        this module; returns self. The usual use, a custom initialisation:

        >>> from numbaconv import nn
        >>> def init_weights(m):
        ...     if isinstance(m, nn.Linear):
        ...         nn.init.xavier_uniform_(m.weight)
        ...         nn.init.zeros_(m.bias)
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).apply(init_weights)
        >>> model[0].bias
        array([0., 0., 0.], dtype=float32)
        """
        if not callable(fn):
            raise TypeError(f"apply: fn must be callable, got {fn!r}")
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ dtypes

    def to(self, *args, dtype=None, device=None):
        """Cast every floating-point parameter and buffer to ``dtype`` (float32 or
        float64; integer buffers stay as they are) and/or move them to ``device``, as
        ``torch.nn.Module.to`` does; returns self.

        ``to("cuda")`` (or ``"cuda:0"``, :meth:`cuda`) puts the floating-point parameters
        and buffers in GPU memory as Numba device arrays (needs numba-cuda and a GPU:
        ``numbaconv.CudaUnavailable`` says what is missing); the model then takes device
        arrays and runs every layer on the GPU, one layer's device result feeding the
        next, with no copy through the host. Integer buffers (BatchNorm's
        ``num_batches_tracked``, a counter) stay on the host. ``to("cpu")`` (:meth:`cpu`)
        copies them back.

        >>> import numpy as np
        >>> from numbaconv import nn
        >>> nn.Linear(2, 3).to(np.float64).weight.dtype
        dtype('float64')
        """
        for arg in args:
            if isinstance(arg, str) and (arg == "cpu" or arg.startswith("cuda")):
                if device is not None:
                    raise TypeError("to: device given twice")
                device = arg
            elif dtype is None:
                dtype = arg
            else:
                raise TypeError(f"to: expected a dtype and/or a device, got {args!r}")
        if device is not None and device not in ("cpu", "cuda", "cuda:0"):
            raise ValueError(f"to: device must be 'cpu', 'cuda' or 'cuda:0', got {device!r}")
        target = None
        if dtype is not None:
            try:
                target = np.dtype(dtype)
            except TypeError:
                raise TypeError(f"to: {dtype!r} is not a dtype or a device") from None
            if target not in (np.float32, np.float64):
                raise TypeError(f"nn.Module.to only accepts floating point dtypes (float32, "
                                f"float64), but got desired dtype={target}")
        cuda = None
        if device is not None and device != "cpu":
            from ..cuda.runtime import require_gpu

            cuda = require_gpu()
        for module in self.modules():
            for registry in (module._parameters, module._buffers):
                for name, value in registry.items():
                    if value is not None:
                        registry[name] = _moved(value, target, device, cuda)
            if target is not None and isinstance(module.__dict__.get("dtype"), np.dtype):
                object.__setattr__(module, "dtype", target)  # what reset_parameters draws
        return self

    def cuda(self) -> "Module":
        """Move the floating-point parameters and buffers to the GPU (``to("cuda")``)."""
        return self.to("cuda")

    def cpu(self) -> "Module":
        """Move every parameter and buffer to host memory (``to("cpu")``)."""
        return self.to("cpu")

    def float(self) -> "Module":
        """Cast floating-point parameters and buffers to float32 (``to(np.float32)``)."""
        return self.to(np.float32)

    def double(self) -> "Module":
        """Cast floating-point parameters and buffers to float64 (``to(np.float64)``)."""
        return self.to(np.float64)

    # ------------------------------------------------------------------ state dicts

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Every parameter and persistent buffer by dotted name (``'0.weight'``,
        ``'bn1.running_mean'``), in torch's order and with torch's names. The values are
        the module's own arrays, not copies (as in torch): take ``{k: v.copy() for k, v
        in m.state_dict().items()}`` for a snapshot."""
        entries = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, value in module._parameters.items():
                if value is not None:
                    entries[dot + name] = value
            for name, value in module._buffers.items():
                if value is not None and name not in module._non_persistent_buffers:
                    entries[dot + name] = value
        return entries

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy parameters and persistent buffers from ``state_dict`` (name -> array-like)
        into this module.

        Accepts a torch model's state dict converted to NumPy,
        ``{k: v.numpy() for k, v in torch_model.state_dict().items()}`` (CPU tensors also
        work as they are), integer buffers such as BatchNorm's ``num_batches_tracked``
        included. Values are cast to each entry's dtype and copied into the existing
        arrays. With ``strict`` (default) a missing or unexpected key is an error;
        a shape mismatch always is. Nothing is copied unless every check passes.

        Returns
        -------
        IncompatibleKeys
            ``(missing_keys, unexpected_keys)``, empty lists when everything matched.

        Raises
        ------
        ValueError
            Missing/unexpected keys (with ``strict``) or shape mismatches, all listed.
        TypeError
            ``state_dict`` is not a mapping, or a value is not a float array.
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"load_state_dict: expected a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        own = self.state_dict()
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict.keys() if key not in own]
        errors, incoming = [], {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.dtype.kind not in "fiub":
                raise TypeError(f"load_state_dict: {key!r} must be a numeric array, got dtype "
                                f"{value.dtype}")
            if value.shape != target.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{value.shape} from checkpoint, the shape in current model is "
                              f"{target.shape}.")
            incoming[key] = value
        if strict:
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                                 + ", ".join(f'"{k}"' for k in missing) + ".")
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                                 + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if errors:
            raise ValueError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                             + "\n\t".join(errors))
        for key, value in incoming.items():
            np.copyto(own[key], value, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ modes

    def train(self, mode: bool = True) -> "Module":
        """Set training mode on this module and every descendant; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, got {mode!r}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (``train(False)``); returns self."""
        return self.train(False)

    # ------------------------------------------------------------------ repr

    def extra_repr(self) -> str:
        """The text between the parentheses of this module's repr (torch's format)."""
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + _indent(repr(child))
                 for name, child in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = ([extra] if extra else []) + lines
        return f"{type(self).__name__}(\n  " + "\n  ".join(body) + "\n)"


def _indent(text: str) -> str:
    """Indent every line of a child's repr but the first by two spaces (torch's layout)."""
    first, *rest = text.split("\n")
    return "\n".join([first] + ["  " + line for line in rest])


def _moved(value, dtype, device, cuda):
    """A parameter or buffer cast to ``dtype`` (floating ones only; None: as it is) and
    moved to ``device`` ('cpu', 'cuda...' with ``cuda`` the numba.cuda module, or None:
    where it is)."""
    on_gpu = devices.is_device_array(value)
    floating = devices.shape_and_dtype(value)[1].kind == "f" if on_gpu else value.dtype.kind == "f"
    if not floating:
        return value  # integer buffers: cast never, and kept on the host
    wanted_on_gpu = on_gpu if device is None else device != "cpu"
    if on_gpu and (device == "cpu" or (dtype is not None and dtype != value.dtype)):
        value, on_gpu = value.copy_to_host(), False  # (device arrays have no astype)
    if dtype is not None and not on_gpu:
        value = value.astype(dtype, copy=False)
    if wanted_on_gpu and not on_gpu:
        if cuda is None:
            from ..cuda.runtime import require_gpu

            cuda = require_gpu()
        value = cuda.to_device(np.ascontiguousarray(value))
    return value


def _as_buffer(name: str, value):
    if devices.is_device_array(value):
        return value
    if value is not None and not isinstance(value, np.ndarray):
        raise TypeError(f"cannot assign '{type(value).__name__}' object to buffer '{name}' "
                        f"(a NumPy array or None required)")
    if value is not None and value.dtype.kind not in "fiub":
        raise TypeError(f"buffer '{name}' must be a numeric array, got dtype {value.dtype}")
    return value


def _as_parameter(owner: str, name: str, value):
    if value is None:
        return None
    if devices.is_device_array(value):  # a model on the GPU (Module.to("cuda"))
        check_float_dtype(owner, name, devices.shape_and_dtype(value)[1])
        return value
    array = check_float_array(owner, name, value)
    if not isinstance(value, np.ndarray):
        array = np.array(array)  # an array-like: keep a private copy, not a view of it
    return array
