"""The kernel-selection front end: a registry of algorithms and the rule that picks one.

Every algorithm declares ``supports(spec)`` (``None`` when it can run the spec, else the
reason it cannot), ``workspace_bytes(spec)`` and ``run(spec, x, weight, bias)``.
``algorithm="auto"`` applies :func:`auto_rule`, a deterministic function of the spec;
``algorithm="autotune"`` times the candidates once per spec and machine (see
:mod:`numbaconv.autotune`); a named algorithm that cannot run the spec raises
:class:`~numbaconv.errors.UnsupportedAlgorithm` and never falls back silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .registry import REGISTRY
from .errors import UnsupportedAlgorithm
from .spec import ConvSpec



SPECIAL = ("auto", "autotune")


@dataclass(frozen=True)
class Plan:
    """What numbaconv will do for a call, decided without computing anything."""

    algorithm: str
    device: str
    output_shape: tuple
    flops: int
    workspace_bytes: int
    reason: str
    spec: ConvSpec = field(repr=False)

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"Plan({s.op}: algorithm={self.algorithm!r} on {self.device}, "
            f"input {_input_shape(s)} -> output {self.output_shape}, "
            f"{self.flops / 1e9:.3g} GFLOP, workspace {self.workspace_bytes / 2**20:.3g} MiB, "
            f"{s.dtype}; why: {self.reason})"
        )

    def _repr_pretty_(self, printer, cycle):  # IPython/Jupyter
        printer.text(repr(self))


def _input_shape(spec: ConvSpec) -> tuple:
    spatial = (spec.in_width,) if spec.op.endswith("1d") else (spec.in_height, spec.in_width)
    head = (spec.batch, spec.in_channels) if spec.batched else (spec.in_channels,)
    return head + spatial


# --------------------------------------------------------------------------- choosing


def auto_rule(spec: ConvSpec) -> tuple[str, str]:
    """The deterministic ``auto`` choice: (algorithm name, why)."""
    return "direct", "the general direct kernel"


def make_plan(spec: ConvSpec, algorithm: str = "auto") -> Plan:
    """Resolve ``algorithm`` for ``spec`` into a :class:`Plan` (nothing is computed)."""
    if not isinstance(algorithm, str) or (algorithm not in REGISTRY and algorithm not in SPECIAL):
        raise ValueError(
            f"{spec.op}: unknown algorithm={algorithm!r}; expected one of "
            f"{SPECIAL + tuple(REGISTRY)}"
        )
    if algorithm == "auto":
        name, reason = auto_rule(spec)
    elif algorithm == "autotune":
        from . import autotune

        name, reason = autotune.choose(spec)
    else:
        why_not = REGISTRY[algorithm].supports(spec)
        if why_not is not None:
            raise UnsupportedAlgorithm(
                f"{spec.op}: algorithm={algorithm!r} cannot run these arguments: {why_not}"
            )
        name, reason = algorithm, "requested explicitly"
    chosen = REGISTRY[name]
    return Plan(
        algorithm=name, device=chosen.device, output_shape=spec.output_shape,
        flops=spec.flops, workspace_bytes=chosen.workspace_bytes(spec), reason=reason, spec=spec,
    )


_NUMPY_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def execute(plan: Plan, x: np.ndarray, weight: np.ndarray, bias) -> np.ndarray:
    """Run ``plan`` on 4-D float arrays of the spec's dtype; returns the user-shaped result.

    ``x`` is (N, C, H, W), ``weight`` (K, C/groups, kH, kW), ``bias`` (K,) or None.
    """
    spec = plan.spec
    if spec.batch == 0 or spec.in_channels == 0:
        return np.zeros(spec.output_shape, dtype=spec.dtype)
    if spec.padding_mode != "zeros":
        pads = ((0, 0), (0, 0), (spec.pad_top, spec.pad_bottom), (spec.pad_left, spec.pad_right))
        x = np.pad(x, pads, mode=_NUMPY_PAD_MODE[spec.padding_mode])
        spec = spec.with_padding_applied()
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight)
    bias = np.zeros(spec.out_channels, spec.dtype) if bias is None else np.ascontiguousarray(bias)
    out = REGISTRY[plan.algorithm].run(spec, x, weight, bias)
    return out.reshape(spec.output_shape)
