"""Optimisers and learning-rate schedulers with torch.optim's names, arguments and update
rules (the single-tensor updates torch runs on the CPU, in the parameters' dtype).

>>> import numpy as np
>>> from numbaconv import nn, optim
>>> model = nn.Linear(3, 1)
>>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
>>> loss, grads = nn.value_and_grad(model, nn.MSELoss())(x, y)
>>> opt.step(grads)        # the parameters change in place

``step(grads)`` takes what ``nn.value_and_grad`` returns (matched to the parameters by
identity), or a list of gradients in the order of the parameters given.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import config

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "StepLR", "CosineAnnealingLR"]


def _number(owner: str, name: str, value, low=0.0) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    if not value >= low:
        raise ValueError(f"{owner}: Invalid {name} value: {value}")
    return float(value)


class Optimizer:
    """Base class: ``param_groups`` (lists of dicts with 'params' and the options, as in
    torch) and per-parameter ``state``."""

    def __init__(self, params, defaults: dict):
        name = type(self).__name__
        if isinstance(params, np.ndarray):
            raise TypeError(f"{name}: params must be an iterable of arrays or of dicts, got "
                            f"a single array (wrap it in a list)")
        params = list(params)
        if not params:
            raise ValueError(f"{name}: optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        self.state = {}
        for group in groups:
            group = dict(group)
            group["params"] = list(group["params"])
            for p in group["params"]:
                if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                    raise TypeError(f"{name}: parameters must be float NumPy arrays, got "
                                    f"{type(p).__name__}")
                if not p.flags.writeable:
                    raise ValueError(f"{name}: a parameter is read-only; step() updates "
                                     f"parameters in place")
            for key, value in defaults.items():
                group.setdefault(key, value)
            self.param_groups.append(group)

    def _gradients(self, grads):
        """[(group, param, grad)] for the parameters that have a gradient."""
        params = [(g, p) for g in self.param_groups for p in g["params"]]
        by_array = getattr(grads, "by_array", None)
        if by_array is None:
            values = list(grads.values()) if isinstance(grads, dict) else list(grads)
            if len(values) != len(params):
                raise ValueError(f"{type(self).__name__}.step: got {len(values)} gradients for "
                                 f"{len(params)} parameters")
            by_array = {id(p): v for (_, p), v in zip(params, values)}
        out = []
        for group, p in params:
            g = by_array.get(id(p))
            if g is None:
                continue
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: gradient of shape {g.shape} for "
                                 f"a parameter of shape {p.shape}")
            out.append((group, p, g.astype(p.dtype, copy=False)))
        return out

    def step(self, grads) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Nothing to clear: gradients are returned by value_and_grad, not stored (kept
        for code written for torch)."""

    def state_dict(self) -> dict:
        return {"state": {i: dict(self.state[id(p)]) for i, p in enumerate(
                    p for g in self.param_groups for p in g["params"]) if id(p) in self.state},
                "param_groups": [{k: v for k, v in g.items() if k != "params"}
                                 for g in self.param_groups]}


class _flat:
    """``with _flat(p) as flat``: p's values as a flat C-contiguous array updated in
    place, written back into p on leaving when p is not contiguous itself."""

    def __init__(self, p):
        self.p = p
        self.flat = np.ascontiguousarray(p).reshape(-1)

    def __enter__(self):
        return self.flat

    def __exit__(self, *exc):
        if not np.shares_memory(self.flat, self.p):
            self.p[...] = self.flat.reshape(self.p.shape)


def _shares(p) -> int:
    """Numba threads for an update of p: one for a small parameter (a bias)."""
    return 1 if p.size * config.WORK_PER_VALUE_READ < config.SMALL_WORK else None


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``: weight decay added to the
    gradient, momentum with dampening, Nesterov momentum, ``maximize``."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        name = "SGD"
        defaults = dict(lr=_number(name, "learning rate", lr),
                        momentum=_number(name, "momentum", momentum),
                        dampening=_number(name, "dampening", dampening, -math.inf),
                        weight_decay=_number(name, "weight_decay", weight_decay),
                        nesterov=bool(nesterov), maximize=bool(maximize))
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    def step(self, grads) -> None:
        from .cpu.optim import sgd_update

        for group, p, g in self._gradients(grads):
            dtype = p.dtype.type
            momentum = group["momentum"]
            buf, first = p, False  # (no momentum: the kernel reads no buffer)
            if momentum:
                state = self.state.setdefault(id(p), {})
                buf = state.get("momentum_buffer")
                first = buf is None
                if first:
                    buf = state["momentum_buffer"] = np.empty_like(p, order="C")
            with _flat(p) as flat:
                sgd_update(flat, g.reshape(-1), buf.reshape(-1), dtype(group["lr"]),
                           dtype(momentum), dtype(1 - group["dampening"]),
                           dtype(group["weight_decay"]), group["nesterov"], group["maximize"],
                           first, workers=_shares(p))


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam``: bias-corrected moment estimates, L2 weight decay
    added to the gradient, ``amsgrad``, ``maximize``."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        name = type(self).__name__
        betas = tuple(betas)
        for i, beta in enumerate(betas):
            if not 0.0 <= _number(name, f"beta parameter at index {i}", beta) < 1.0:
                raise ValueError(f"{name}: Invalid beta parameter at index {i}: {beta}")
        defaults = dict(lr=_number(name, "learning rate", lr), betas=betas,
                        eps=_number(name, "epsilon value", eps),
                        weight_decay=_number(name, "weight_decay value", weight_decay),
                        amsgrad=bool(amsgrad), maximize=bool(maximize))
        super().__init__(params, defaults)

    def step(self, grads) -> None:
        from .cpu.optim import adam_update

        for group, p, g in self._gradients(grads):
            dtype = p.dtype.type
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            state = self.state.setdefault(id(p), {})
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(p, order="C")
                state["exp_avg_sq"] = np.zeros_like(p, order="C")
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = np.zeros_like(p, order="C")
            state["step"] += 1
            step = state["step"]
            decay = group["weight_decay"]
            shrink = 1 - lr * decay if self._decoupled else 1.0
            largest = state.get("max_exp_avg_sq", p) if group["amsgrad"] else p
            with _flat(p) as flat:
                adam_update(flat, g.reshape(-1), state["exp_avg"].reshape(-1),
                            state["exp_avg_sq"].reshape(-1), largest.reshape(-1),
                            dtype(1 - beta1), dtype(beta2), dtype(1 - beta2), dtype(eps),
                            dtype(0 if self._decoupled else decay), dtype(shrink),
                            group["amsgrad"], group["maximize"],
                            dtype(lr / (1 - beta1 ** step)), dtype(math.sqrt(1 - beta2 ** step)),
                            workers=_shares(p))


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW`` (parameters shrink by
    lr * weight_decay before the Adam step; default weight_decay 0.01)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


class _Scheduler:
    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: {type(optimizer).__name__} is not an "
                            f"Optimizer")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0

    def get_last_lr(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one epoch and set each group's learning rate."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self._next_lrs()):
            group["lr"] = lr


class StepLR(_Scheduler):
    """The learning rate times ``gamma`` every ``step_size`` epochs, as torch's StepLR."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        if not isinstance(step_size, int) or isinstance(step_size, bool) or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, float(gamma)

    def _next_lrs(self):
        decay = self.last_epoch % self.step_size == 0
        return [g["lr"] * self.gamma if decay else g["lr"] for g in self.optimizer.param_groups]


class CosineAnnealingLR(_Scheduler):
    """Cosine annealing from the initial rate to ``eta_min`` over ``T_max`` epochs, as
    torch's CosineAnnealingLR (its recursive form, so rates set by hand carry on)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        if not isinstance(T_max, int) or isinstance(T_max, bool) or T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = T_max, float(eta_min)

    def _next_lrs(self):
        t, T, low = self.last_epoch, self.T_max, self.eta_min
        groups = self.optimizer.param_groups
        if (t - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (base - low) * (1 - math.cos(math.pi / T)) / 2
                    for g, base in zip(groups, self.base_lrs)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (g["lr"] - low) + low for g in groups]
