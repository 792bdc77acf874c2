"""The table of algorithms the planner chooses from (pure Python: nothing compiles here).

Each entry says what an algorithm can run (``supports`` returns ``None`` or the reason it
cannot), how much scratch memory it needs, and where its kernel lives; the kernel
module is imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .spec import ConvSpec

#: GEMM: output columns per BLAS call (images are batched until this many).
GEMM_TARGET_COLUMNS = 4096


@dataclass(frozen=True)
class Algorithm:
    """One way of computing a convolution, as the planner sees it."""

    name: str
    device: str
    summary: str
    supports: Callable[[ConvSpec], Optional[str]]
    workspace_bytes: Callable[[ConvSpec], int]
    runner: str  # "module:function" under numbaconv, imported on first use

    def run(self, spec: ConvSpec, x, weight, bias):
        module_name, func_name = self.runner.split(":")
        module = __import__(f"numbaconv.{module_name}", fromlist=[func_name])
        return getattr(module, func_name)(spec, x, weight, bias)


REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    REGISTRY[algorithm.name] = algorithm
    return algorithm


def _has_padding(spec: ConvSpec) -> bool:
    return bool(spec.pad_top or spec.pad_bottom or spec.pad_left or spec.pad_right)


def _padded_input_elements(spec: ConvSpec) -> int:
    return spec.batch * spec.in_channels * spec.padded_height * spec.padded_width


# --------------------------------------------------------------------------- direct


def _direct_workspace(spec: ConvSpec) -> int:
    phase_width = -(-spec.padded_width // spec.stride_w)
    elements = spec.batch * spec.in_channels * spec.padded_height * spec.stride_w * phase_width
    return elements * spec.itemsize


register(Algorithm(
    name="direct", device="cpu",
    summary="direct loops vectorised along output rows; runs every spec",
    supports=lambda spec: None, workspace_bytes=_direct_workspace,
    runner="cpu.direct:run",
))


# --------------------------------------------------------------------------- gemm


def gemm_images_per_chunk(spec: ConvSpec) -> int:
    return max(1, min(spec.batch, GEMM_TARGET_COLUMNS // (spec.out_height * spec.out_width)))


def _gemm_workspace(spec: ConvSpec) -> int:
    columns = gemm_images_per_chunk(spec) * spec.out_height * spec.out_width
    depth = spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    padded = _padded_input_elements(spec) if _has_padding(spec) else 0
    return (padded + (depth + spec.out_channels_per_group) * columns) * spec.itemsize


register(Algorithm(
    name="gemm", device="cpu",
    summary="im2col + one BLAS matrix product per group and chunk of images; runs every spec",
    supports=lambda spec: None, workspace_bytes=_gemm_workspace,
    runner="cpu.gemm:run",
))
