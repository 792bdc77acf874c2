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

from . import config, isa
from .epilogue import NO_EPILOGUE
from .errors import UnsupportedAlgorithm
from .registry import (CUDA_REGISTRY, GEMM_WHOLE_UNFOLD_BYTES, REGISTRY, gemm_kernel,
                       padded_copy_bytes, tap_work)
from .spec import ConvSpec



SPECIAL = ("auto", "autotune")


def algorithm_names() -> tuple:
    """Every name ``algorithm=`` accepts, on some device."""
    return SPECIAL + tuple(REGISTRY) + tuple(n for n in CUDA_REGISTRY if n not in REGISTRY)


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
    requested: str = field(default="auto", repr=False)  # the algorithm= argument
    #: False when the call would need more than the memory limit: running the plan
    #: raises MemoryError (the reason gives the figures) before allocating anything.
    fits: bool = True
    #: The algorithm's kernel that runs (``registry.Algorithm.kernel``), and what it does.
    kernel: str = ""
    kernel_summary: str = field(default="", repr=False)

    def __repr__(self) -> str:
        s = self.spec
        kernel = f", kernel {self.kernel!r}" if self.kernel != self.algorithm else ""
        how = f" [{self.kernel}: {self.kernel_summary}]" if self.kernel_summary else ""
        return (
            f"Plan({s.op}: algorithm={self.algorithm!r}{kernel} on {self.device}, "
            f"input {_input_shape(s)} -> output {self.output_shape}, "
            f"{self.flops / 1e9:.3g} GFLOP, workspace {self.workspace_bytes / 2**20:.3g} MiB, "
            f"{s.dtype}; {'why' if self.fits else 'DOES NOT FIT'}: {self.reason}{how})"
        )

    def _repr_pretty_(self, printer, cycle):  # IPython/Jupyter
        printer.text(repr(self))


def _input_shape(spec: ConvSpec) -> tuple:
    spatial = (spec.in_width,) if spec.op.endswith("1d") else (spec.in_height, spec.in_width)
    head = (spec.batch, spec.in_channels) if spec.batched else (spec.in_channels,)
    return head + spatial


# --------------------------------------------------------------------------- choosing


#: Channels per group from which a layer counts as "dense" for the ``auto`` rule.
DENSE_CHANNELS = 16
#: The share of the positions the direct kernel computes that must be real outputs for it
#: to be chosen (see direct_tile_use).
DIRECT_MIN_TILE_USE = 0.5
#: Bytes of input a direct register tile of 64 positions (float32 on AVX-512) reads
#: through all its taps (channels x taps x DIRECT_TILE_POSITIONS values), beyond which
#: the tiles re-stream them from beyond L2 for every 6 output channels and GEMM's
#: L2-blocked im2col wins. A fixed count of positions rather than the CPU's panel: it
#: measures how much input a block's tiles share, the same on AVX2. Measured (2 threads,
#: AVX-512, batch 1): DeepLab's 2048 -> 256 3x3 at dilation 12 (4.5 MiB) direct 104-131
#: ms, GEMM 67-69 ms; 512 -> 512 3x3 stride 2 (1.1 MiB) 2.1 against 1.9 ms; 256 -> 512
#: 3x3 stride 2 (0.6 MiB) direct 1.1 ms, GEMM 1.8 ms.
DIRECT_MAX_TILE_BYTES = 1 << 20
DIRECT_TILE_POSITIONS = 64
#: Output rows and columns (per dilation phase) from which Winograd pays: one 4x4 tile.
WINOGRAD_MIN_PHASE = 4
#: Channels per group from which a grouped layer (groups > 1) runs Winograd: it runs one
#: pipeline per group, whose matrix products are then too small to pay for the
#: transforms. Measured (2 threads, AVX-512), ResNeXt/RegNet 3x3 layers, direct against
#: Winograd: 32 groups of 16 channels on 14x14 0.42 ms against 0.93 (batch 8: 2.5 against
#: 3.7), 32 groups of 32 on 7x7 0.54 against 0.90.
WINOGRAD_MIN_GROUP_CHANNELS = 64
#: F(4x4) output tiles per call (over the batch and the dilation phases) below which the
#: CPU runs F(2x2) instead: with a handful of tiles F(4x4)'s per-position products are a
#: few rows each (a register tile holds 6) and its transformed weights, 36/16 of
#: F(2x2)'s, are read for little work; a 13x13 or 14x14 image has 16 tiles, a 7x7 one 4.
#: Measured at batch 1 (2 threads, AVX-512, time / torch's, each size run in whichever
#: of blocks or stages is faster): 192 -> 384 on 13x13 F(4x4) 1.06, F(2x2) 0.78; 160 ->
#: 320 on 7x7 0.73 against 0.61; densenet's 128 -> 32 on 14x14 0.94 against 0.83; 256 ->
#: 256 on 14x14 0.60 against 0.58; from 28x28 (49 tiles) F(4x4) wins: 128 -> 128 0.48
#: against 0.64, densenet's 128 -> 32 0.74 against 0.77; at batch 8, 512 -> 512 on 7x7
#: (32 tiles) 0.82 against 0.97.
WINOGRAD_F4_MIN_TILES = 32


def winograd_pays(spec: ConvSpec, registry: dict) -> bool:
    """Rule 1 of :func:`auto_rule`, on either device: ``registry``'s F(4x4) runs the spec,
    with >= 16 channels per group in and out (>= 64 in a grouped layer) and a whole 4x4
    output tile."""
    # A dilated layer runs as one plain convolution per dilation phase; below one whole
    # 4x4 output tile per phase most of Winograd's work would be thrown away.
    phase = min(spec.out_height // spec.dilation_h, spec.out_width // spec.dilation_w)
    least = DENSE_CHANNELS if spec.groups == 1 else WINOGRAD_MIN_GROUP_CHANNELS
    # Larger kernels run Winograd (as 3x3 pieces) only when asked for, by name or by
    # autotune: on AVX2 (2 threads) the pieces lost to direct on Inception's 48 -> 64 5x5
    # on 35x35 (batch 1 2.8 ms against 2.0, batch 8 15.7 against 11.5) and a 32 -> 32 7x7
    # on 28x28 (1.6 against 0.9), and split AlexNet's 64 -> 192 5x5 on 27x27 (batch 1 4.1
    # against 4.7, batch 8 33 against 27).
    return ((spec.kernel_height, spec.kernel_width) == (3, 3)
            and registry["winograd_f4x4"].supports(spec) is None
            and spec.in_channels_per_group >= least
            and spec.out_channels_per_group >= least and phase >= WINOGRAD_MIN_PHASE)


#: Transformed Winograd F(4x4) weights beyond which (6x6 positions: 4x the weights, more
#: than the L3 cache of the reference machine can keep for a network's next call) a
#: call with fewer than WINOGRAD_MIN_STREAMED_POSITIONS outputs runs GEMM: Winograd then
#: spends its time reading the transformed weights from memory. Measured (2 threads,
#: AVX-512), ResNet's 512 -> 512 3x3 on 7x7 at batch 1 (38 MiB): Winograd 4.4 ms, GEMM
#: 2.3 ms, torch 2.0; at batch 8 (392 outputs) Winograd 11.8, GEMM 12.5; on 14x14 at
#: batch 1 (196) 5.0 against 5.5.
WINOGRAD_STREAMED_WEIGHT_BYTES = 16 << 20
WINOGRAD_MIN_STREAMED_POSITIONS = 128


#: F(4x4) output tiles per call, and per image, below which, while every call's weights
#: are new (a training step: ``config.fresh_weights``), the CPU does not run Winograd:
#: transforming the weights (6x6 values from each 3x3 kernel, written out) then costs
#: more than the multiplications it saves, both growing with input x output channels.
#: Measured (Zen 4, AVX-512, 2 threads, 3x3, forward + input gradient, ms, F(4x4) /
#: what ran with 64 tiles the least): 128 -> 128 on 8x8 at batch 8 (32 tiles) 2.0 / 3.0,
#: at batch 4 (16) 1.2-1.4 / 1.7-1.8, 256 -> 256 on 8x8 at batch 8 7.5-8.1 / 9.1-9.9;
#: but planes of one tile each lose: 256 -> 256 on 4x4 at batch 16 (16 tiles) 5.4-6.9 /
#: 4.6-5.7, at batch 8 4.0-5.0 / 2.5-2.7.
WINOGRAD_FRESH_MIN_TILES = 16
WINOGRAD_FRESH_MIN_TILES_PER_IMAGE = 4


def fresh_transform_pays(spec: ConvSpec) -> bool:
    """False while weights are new on every call (``config.fresh_weights``) and ``spec``
    has too few output tiles to pay for transforming them (WINOGRAD_FRESH_MIN_TILES, and
    WINOGRAD_FRESH_MIN_TILES_PER_IMAGE)."""
    tiles = winograd_f4_tiles(spec)
    return not config.weights_are_fresh() or (
        tiles >= WINOGRAD_FRESH_MIN_TILES
        and tiles >= WINOGRAD_FRESH_MIN_TILES_PER_IMAGE * spec.batch)


def winograd_f4_tiles(spec: ConvSpec) -> int:
    """Output tiles F(4x4) computes for ``spec``, over its batch and dilation phases."""
    dh, dw = spec.dilation_h, spec.dilation_w
    phase_h, phase_w = -(-spec.out_height // dh), -(-spec.out_width // dw)
    return spec.batch * dh * dw * -(-phase_h // 4) * -(-phase_w // 4)


def winograd_streams_weights(spec: ConvSpec) -> bool:
    """True when F(4x4)'s transformed weights outgrow the caches and the call has too few
    outputs to pay for reading them (see WINOGRAD_STREAMED_WEIGHT_BYTES)."""
    weights = 36 * spec.in_channels_per_group * spec.out_channels * spec.itemsize
    positions = spec.batch * spec.out_height * spec.out_width
    return (weights > WINOGRAD_STREAMED_WEIGHT_BYTES
            and positions < WINOGRAD_MIN_STREAMED_POSITIONS)


#: Kernel taps from which a stride-1 layer runs direct rather than GEMM's whole im2col on
#: a CPU with 32-byte vectors (AVX2): the im2col matrix is taps times the input, and the
#: direct tiles, which read each tap's inputs in place, are narrower there (16 positions).
#: Measured (AVX2, 2 threads, batch 1), direct against im2col_whole: AlexNet's 64 -> 192
#: 5x5 on 27x27 3.5 ms against 4.2 (torch 2.8), Inception-v3's 48 -> 64 5x5 on 35x35 2.0
#: against 4.2, 32 -> 32 7x7 on 28x28 0.9 against 2.4; a 1x7 still ran faster as GEMM
#: (Inception's 128 -> 128 on 17x17, 0.82 against 1.03). With AVX-512 AlexNet's 5x5 ran
#: 2.7 against 2.5, and im2col_whole stays.
DIRECT_LARGE_KERNEL_TAPS_AVX2 = 25


def direct_reads_large_kernel(spec: ConvSpec) -> bool:
    """A stride-1 layer with at least DIRECT_LARGE_KERNEL_TAPS_AVX2 taps, on AVX2."""
    return (isa.VECTOR_BYTES == 32 and spec.stride_h == spec.stride_w == 1
            and spec.kernel_height * spec.kernel_width >= DIRECT_LARGE_KERNEL_TAPS_AVX2)


def direct_tile_use(spec: ConvSpec) -> float:
    """The share of the positions the direct kernel's tiles compute per image that are
    outputs: it computes whole rows of the (phase-split) padded grid, a panel of
    positions at a time (``isa.panel_positions``: 64 float32 with AVX-512, 16 with AVX2)."""
    grid = spec.out_height * -(-spec.padded_width // spec.stride_w)
    panel = isa.panel_positions(spec.itemsize)
    computed = -(-grid // panel) * panel
    return spec.out_height * spec.out_width / computed if computed else 1.0


def auto_rule(spec: ConvSpec) -> tuple[str, str]:
    """The deterministic ``auto`` choice: (algorithm name, why).

    The rule looks only at the shape of the work, so it carries over to layers it was
    not measured on (measurements: ``python -m numbaconv bench --algorithm NAME``):

    1. 3x3, stride 1 with >= 16 input and output channels per group (>= 64 in grouped
       layers, see ``WINOGRAD_MIN_GROUP_CHANNELS``): Winograd F(4x4, 3x3).
       It does 2.25 multiplies per output and channel instead of 9, and beat F(2x2)
       (4 multiplies) and every other algorithm on all such layers of the public set,
       from 7x7 to 56x56 images and 64 to 512 channels, wherever the call has at least
       ``WINOGRAD_F4_MIN_TILES`` 4x4 output tiles; with fewer (a 14x14 image at batch
       1), F(2x2), whose products have 4x the rows, wins. A dilated layer is computed as
       one plain convolution per dilation phase (dilated_b1: 1.0 ms against GEMM's
       1.9 ms). Either way the output (per phase) must hold a whole 4x4 tile, and a
       call with few outputs whose transformed weights outgrow the caches goes on to the
       next rules (``winograd_streams_weights``), and so does, in a training step (new
       weights on every call), one with fewer than ``WINOGRAD_FRESH_MIN_TILES`` tiles
       (or ``WINOGRAD_FRESH_MIN_TILES_PER_IMAGE`` an image).
    2. A 1x1 convolution of 1x1 images (squeeze-and-excitation blocks), any channel
       counts: GEMM, which computes it as one dot product per output (48 -> 1152
       channels at batch 1: 89 us a call as a tiled matrix product, 22 us so; torch 10-16).
       Pointwise (1x1, stride 1) with >= 16 channels per group in and out: GEMM. The
       input already is the matrix (no im2col copy), and the packed, depth-blocked
       product beats the direct tiles on it (pointwise_b8: 0.16 ms against 0.36 ms).
       Unpadded strided 1x1 layers too, on a copy of the pixels they read (ResNet's
       512 -> 1024 downsampling on 28x28, batch 1: 1.1 ms against direct's 2.0).
    3. Mostly padding: GEMM's per-tap products when skipping the (output, tap) pairs
       that read only padding leaves at most 70% of them (DeepLab's 2048 -> 256 3x3 on 28x28
       at dilation 24, batch 1: 11 ms against 77 ms by im2col, torch 10-11 ms).
       Small ungrouped layers with >= 16 channels in and out whose whole im2col matrix
       (every image) fits in GEMM_WHOLE_UNFOLD_BYTES: GEMM, unfolded at once and
       multiplied in jobs of output channels or positions, each reading the weights
       once. Measured at batch 1 against direct: ResNet's 256 -> 256 3x3 stride 2 on
       28x28 1.6 ms against 2.1 (torch 1.1), ConvNeXt's 192 -> 384 2x2 stride 2 0.76
       against 1.15 (torch 0.63), Inception's 128 -> 128 1x7 0.49 against 0.86, AlexNet's
       64 -> 192 5x5 2.5 against 2.7 (with AVX2, stride-1 layers of 25 taps or more run
       direct: ``DIRECT_LARGE_KERNEL_TAPS_AVX2``). Larger (batch 8: 14-26 MiB), direct
       won: 64 -> 128 3x3 stride 2 on 56x56 5.8 ms against 7.0 (blocks) and 7.5 (whole).
       Deep inputs: GEMM when one direct tile's inputs over all taps exceed the L2
       cache (``DIRECT_MAX_TILE_BYTES``; DeepLab's dilated 2048-channel layers).
       Small images with >= 16 channels per group in and out: GEMM, when under half
       of the positions the direct kernel's tiles compute would be outputs (it computes
       whole rows of the padded grid, 64 positions at a time). Measured: 1024 channels
       on 2x2 images, direct 4.4x GEMM's time; 512 channels on 7x7 with dilation 3, 3.6x.
    4. Every other layer: direct. With >= 4 output channels per group it is an
       implicit GEMM in register tiles (``direct.tiled_conv2d``), which reads each tap's
       inputs in place; against GEMM's im2col copy it won on every other layer measured,
       thin or dense, strided, dilated or large-kernel (direct/GEMM time: LeNet 0.49,
       VGG's and U-Net's first layers 0.58 and 0.40, ResNet stem 0.96, AlexNet's first
       two 0.79 and 0.73, strided 3x3 64->128 0.79 and 512->512 0.55, Inception 7x1 0.56,
       dense 5x5 0.41-0.47, ResNeXt groups 0.45; DeepLab-like 256 channels at dilation
       12 on 33x33, 1.11, the closest). Depthwise layers have their own direct kernels
       (depthwise_b8: direct 0.4 ms, GEMM 6.9 ms).
    """
    cg, kg = spec.in_channels_per_group, spec.out_channels_per_group
    if winograd_pays(spec, REGISTRY) and not winograd_streams_weights(spec) \
            and fresh_transform_pays(spec):
        dilated = " (per dilation phase)" if spec.dilation_h * spec.dilation_w > 1 else ""
        tiles = winograd_f4_tiles(spec)
        if tiles < WINOGRAD_F4_MIN_TILES:
            return "winograd_f2x2", (
                f"3x3 stride-1 layer with {cg} -> {kg} channels per group: Winograd"
                f"{dilated} does fewer multiplications than direct; F(2x2,3x3), as F(4x4)"
                f" would compute only {tiles} output tiles")
        return "winograd_f4x4", (
            f"3x3 stride-1 layer with {cg} -> {kg} channels per group: Winograd F(4x4,3x3)"
            f"{dilated} does 4x fewer multiplications than direct")
    if spec.is_vector_product:
        return "gemm", (f"1x1 convolution of 1x1 images ({cg} -> {kg} channels): "
                        f"one dot product per output, vectorised along the channels")
    one_by_one = spec.kernel_height == spec.kernel_width == 1
    if one_by_one and cg >= DENSE_CHANNELS and kg >= DENSE_CHANNELS:
        if spec.stride_h == spec.stride_w == 1:
            return "gemm", (f"pointwise layer ({cg} -> {kg} channels per group): the input "
                            f"is the matrix, one matrix product per image")
        if spec.is_unpadded_1x1:
            return "gemm", (f"strided 1x1 layer ({cg} -> {kg} channels per group): the "
                            f"pixels it reads copied together, then one matrix product "
                            f"per image")
    if cg >= DENSE_CHANNELS and kg >= DENSE_CHANNELS and gemm_kernel(spec) == "tap_tiles":
        return "gemm", (f"most taps read only padding: register tiles over a channels-last "
                        f"copy of the input, tap by tap, over the output rows where each "
                        f"tap reads inside it, {tap_work(spec):.0%} of the (output, tap) "
                        f"pairs")
    taps_bytes = cg * spec.kernel_height * spec.kernel_width * DIRECT_TILE_POSITIONS \
        * spec.itemsize
    if taps_bytes > DIRECT_MAX_TILE_BYTES and kg >= DENSE_CHANNELS:
        return "gemm", (f"{cg} channels x {spec.kernel_height}x{spec.kernel_width} taps: each "
                        f"direct tile would stream {taps_bytes / 2**20:.1f} MiB of inputs per "
                        f"6 output channels, more than a core's L2 cache; im2col in L2-sized "
                        f"blocks + matrix product")
    if (spec.groups == 1 and cg >= DENSE_CHANNELS and kg >= DENSE_CHANNELS
            and gemm_kernel(spec) == "im2col_whole" and not direct_reads_large_kernel(spec)):
        return "gemm", (f"{cg} -> {kg} channels, {spec.kernel_height}x{spec.kernel_width} "
                        f"kernel, stride {(spec.stride_h, spec.stride_w)}: the whole im2col "
                        f"matrix fits in {GEMM_WHOLE_UNFOLD_BYTES >> 20} MiB; unfolded once, "
                        f"then one matrix product cut by output channels or positions")
    use = direct_tile_use(spec)
    if use < DIRECT_MIN_TILE_USE and cg >= DENSE_CHANNELS and kg >= DENSE_CHANNELS:
        return "gemm", (f"{spec.out_height}x{spec.out_width} outputs per image: the direct "
                        f"tiles would waste {1 - use:.0%} of their work; im2col + matrix "
                        f"product")
    kind = "depthwise" if spec.is_depthwise else f"{cg} -> {kg} channels per group"
    return "direct", (
        f"{kind}, {spec.kernel_height}x{spec.kernel_width} kernel, stride "
        f"{(spec.stride_h, spec.stride_w)}: direct convolution, reading the input in place")


def cuda_auto_rule(spec: ConvSpec) -> tuple[str, str]:
    """The ``auto`` choice on the GPU: (algorithm name, why).

    Winograd F(4x4,3x3) for dense 3x3 stride-1 undilated layers (>= 16 input and output
    channels per group, at least one whole 4x4 output tile): 2.25 multiplies per output
    and channel instead of 9, in one batched GEMM. Everything else: the tiled direct
    kernel. The thresholds are the CPU rule's; they have not been tuned on GPU hardware.
    """
    cg, kg = spec.in_channels_per_group, spec.out_channels_per_group
    if winograd_pays(spec, CUDA_REGISTRY):
        return "winograd_f4x4", (f"3x3 stride-1 layer with {cg} -> {kg} channels per group: "
                                 f"Winograd F(4x4,3x3) on the GPU, 4x fewer multiplications")
    return "direct", "the shared-memory tiled direct kernel runs every other layer on the GPU"


def _cuda_plan(spec: ConvSpec, algorithm: str) -> tuple[str, str]:
    if algorithm in SPECIAL:
        name, reason = cuda_auto_rule(spec)
        if algorithm == "autotune":
            reason += " (autotune times CPU algorithms only; the GPU uses the auto rule)"
        return name, reason
    if algorithm not in CUDA_REGISTRY:
        raise UnsupportedAlgorithm(
            f"{spec.op}: algorithm={algorithm!r} has no GPU kernel; on device 'cuda' choose "
            f"one of {SPECIAL + tuple(CUDA_REGISTRY)}")
    why_not = CUDA_REGISTRY[algorithm].supports(spec)
    if why_not is not None:
        raise UnsupportedAlgorithm(
            f"{spec.op}: algorithm={algorithm!r} cannot run these arguments on the GPU: {why_not}")
    return algorithm, "requested explicitly"


def needed_bytes(spec: ConvSpec, name: str) -> int:
    """Memory a call allocates: the output, the algorithm's scratch, a padded input copy."""
    out = spec.batch * spec.result_channels * spec.out_height * spec.out_width
    # a non-zero padding mode is materialised by np.pad before the kernel runs
    return out * spec.itemsize + padded_copy_bytes(spec) + REGISTRY[name].workspace_bytes(spec)


def fits(spec: ConvSpec, name: str) -> bool:
    return needed_bytes(spec, name) <= config.memory_limit()


def memory_error(spec: ConvSpec, name: str) -> MemoryError:
    return config.memory_error(f"{spec.op}: algorithm {name!r}", needed_bytes(spec, name))


def _fitting_alternative(spec: ConvSpec, name: str, reason: str) -> tuple[str, str]:
    """``name`` if it fits the memory limit, else the supported algorithm needing least
    (which may not fit either: the plan then says so)."""
    if fits(spec, name):
        return name, reason
    supported = [n for n, a in REGISTRY.items() if a.supports(spec) is None]
    smallest = min(supported, key=lambda n: needed_bytes(spec, n))
    if not fits(spec, smallest):
        return smallest, reason
    return smallest, (f"{name} would need {needed_bytes(spec, name) / 2**20:.0f} MiB, over the "
                      f"memory limit; {smallest} needs the least memory "
                      f"({needed_bytes(spec, smallest) / 2**20:.0f} MiB)")


def make_plan(spec: ConvSpec, algorithm: str = "auto", device: str = "cpu") -> Plan:
    """Resolve ``algorithm`` for ``spec`` on ``device`` into a :class:`Plan` (nothing is computed).

    On the CPU, a call that would need more than the memory limit (see
    ``config.memory_limit``) gets a plan with ``fits=False`` whose reason gives the
    figures, and :func:`execute` raises MemoryError for it before allocating anything;
    ``auto`` and ``autotune`` first fall back to the supported algorithm that needs the
    least memory. On the GPU an allocation that does not fit raises the CUDA driver's
    out-of-memory error.
    """
    if not isinstance(algorithm, str) or algorithm not in algorithm_names():
        raise ValueError(
            f"{spec.op}: unknown algorithm={algorithm!r}; expected one of {algorithm_names()}"
        )
    if device == "cuda":
        name, reason = _cuda_plan(spec, algorithm)
        chosen = CUDA_REGISTRY[name]
        return Plan(algorithm=name, device="cuda", output_shape=spec.output_shape,
                    flops=spec.flops, workspace_bytes=chosen.workspace_bytes(spec),
                    reason=reason, spec=spec, requested=algorithm,
                    **_kernel_fields(chosen, spec))
    if algorithm not in REGISTRY and algorithm not in SPECIAL:
        raise UnsupportedAlgorithm(
            f"{spec.op}: algorithm={algorithm!r} runs on the GPU only (pass device arrays or "
            f"device='cuda'); on the CPU choose one of {SPECIAL + tuple(REGISTRY)}")
    if algorithm == "auto" and not config.AUTOTUNE:
        name, reason = _fitting_alternative(spec, *auto_rule(spec))
    elif algorithm in ("auto", "autotune"):
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
    fitting = fits(spec, name)
    return Plan(
        algorithm=name, device=chosen.device, output_shape=spec.output_shape,
        flops=spec.flops, workspace_bytes=chosen.workspace_bytes(spec),
        reason=reason if fitting else str(memory_error(spec, name)), spec=spec,
        requested=algorithm, fits=fitting, **_kernel_fields(chosen, spec),
    )


def _kernel_fields(algorithm, spec: ConvSpec) -> dict:
    kernel = algorithm.kernel(spec)
    return dict(kernel=kernel, kernel_summary=algorithm.kernels.get(kernel, ""))


_NUMPY_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def with_padding_applied(spec: ConvSpec, x: np.ndarray) -> tuple[ConvSpec, np.ndarray]:
    """(spec, x) with a non-zero ``padding_mode`` materialised: x (N, C, H, W) padded by
    np.pad in that mode, and the spec of the unpadded convolution of the result (the
    forward pass and the weight gradient both run on it)."""
    if spec.padding_mode == "zeros":
        return spec, x
    pads = ((0, 0), (0, 0), (spec.pad_top, spec.pad_bottom), (spec.pad_left, spec.pad_right))
    return spec.with_padding_applied(), np.pad(x, pads, mode=_NUMPY_PAD_MODE[spec.padding_mode])


def padded_sources(spec: ConvSpec) -> tuple[np.ndarray, np.ndarray]:
    """For each row and each column of the input as ``with_padding_applied`` pads it, the
    row or column of the input it holds (np.pad's own mapping, applied to the indices)."""
    mode = _NUMPY_PAD_MODE[spec.padding_mode]
    return (np.pad(np.arange(spec.in_height), (spec.pad_top, spec.pad_bottom), mode=mode),
            np.pad(np.arange(spec.in_width), (spec.pad_left, spec.pad_right), mode=mode))


def prepare(plan: Plan, post=NO_EPILOGUE):
    """:func:`execute` for ``plan`` (and ``post``) as a function of (x, weight, bias), for a layer called
    again and again (``functional`` keeps one per repeated call): the checks and choices
    that depend only on the plan are made once. The algorithm's runner
    (``Algorithm.prepare``) may return its result in any shape of the output's size. A
    squeeze-and-excitation 1x1 convolution costs about as much Python as arithmetic
    (measured, a 48 -> 8 one with torch's keyword arguments: 6.9 us a call through
    execute, 4.0 us so; torch 4.7 us)."""
    spec = plan.spec
    if not plan.fits or spec.batch == 0 or spec.in_channels == 0 \
            or spec.padding_mode != "zeros":
        return lambda x, weight, bias: execute(plan, x, weight, bias, post)
    run = REGISTRY[plan.algorithm].prepare(spec, plan.requested in SPECIAL, post)
    no_bias = np.zeros(spec.out_channels, spec.dtype)  # read by the kernels, never returned
    # (a runner that sizes its own shares says so: no small-work block around it)
    small = spec.flops // 2 < config.SMALL_WORK and not getattr(run, "sizes_shares", False)
    shape = spec.output_shape
    contiguous = np.ascontiguousarray

    def prepared(x, weight, bias):
        bias = no_bias if bias is None else contiguous(bias)
        if small:
            with config.one_share_for(0):
                out = run(contiguous(x), contiguous(weight), bias)
        else:
            out = run(contiguous(x), contiguous(weight), bias)
        return out.reshape(shape)

    return prepared


def execute(plan: Plan, x: np.ndarray, weight: np.ndarray, bias,
            post=NO_EPILOGUE) -> np.ndarray:
    """Run ``plan`` on 4-D float arrays of the spec's dtype; returns the user-shaped result.

    ``x`` is (N, C, H, W), ``weight`` (K, C/groups, kH, kW), ``bias`` (K,) or None;
    ``post`` an activation applied to the output (:mod:`numbaconv.epilogue`).
    Raises MemoryError, before allocating, for a plan that does not fit the memory limit.
    """
    spec = plan.spec
    if not plan.fits:
        raise memory_error(spec, plan.algorithm)
    if spec.batch == 0 or spec.in_channels == 0:
        return np.zeros(spec.output_shape, dtype=spec.dtype)
    spec, x = with_padding_applied(spec, x)
    x = np.ascontiguousarray(x)
    weight = np.ascontiguousarray(weight)
    bias = np.zeros(spec.out_channels, spec.dtype) if bias is None else np.ascontiguousarray(bias)
    # A choice numbaconv made must behave like torch for inf/NaN too; an algorithm the
    # user named behaves as documented for that algorithm.
    chosen_for_user = plan.requested in SPECIAL
    with config.one_share_for(spec.flops // 2):
        out = REGISTRY[plan.algorithm].run(spec, x, weight, bias,
                                           match_torch_nonfinite=chosen_for_user, post=post)
    return out.reshape(spec.output_shape)
