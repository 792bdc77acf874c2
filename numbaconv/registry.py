"""The table of algorithms the planner chooses from (pure Python: nothing compiles here).

Each entry says what an algorithm can run (``supports`` returns ``None`` or the reason it
cannot), how much scratch memory it needs, and where its kernel lives; the kernel
module is imported on first use.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional

from . import config, epilogue, isa
from .epilogue import NO_EPILOGUE
from .spec import ConvSpec

@dataclass(frozen=True)
class Algorithm:
    """One way of computing a convolution, as the planner sees it."""

    name: str
    device: str
    summary: str
    supports: Callable[[ConvSpec], Optional[str]]
    workspace_bytes: Callable[[ConvSpec], int]
    runner: str  # "module:function" under numbaconv, imported on first use
    mixes_nonfinite: bool = False  # an inf/NaN input spreads wider than in torch
    #: The algorithm's kernels, name -> what it does, and the pure-Python rule naming the
    #: one that runs a spec (the runner dispatches on the same rule): what ``plan()``
    #: shows, and what the workspace estimate is computed for.
    kernels: Mapping[str, str] = field(default_factory=dict)
    choose_kernel: Optional[Callable[[ConvSpec], str]] = None
    #: The kernels apply an activation (:mod:`numbaconv.epilogue`) to the rows they write:
    #: the runner takes ``post`` after the bias (else ``run`` applies it afterwards).
    fuses_epilogue: bool = False

    def kernel(self, spec: ConvSpec) -> str:
        """The name of the kernel that runs ``spec`` (the algorithm's own name when it has
        one kernel). ``spec`` as the kernel sees it: a non-zero padding mode applied."""
        if spec.padding_mode != "zeros":
            spec = spec.with_padding_applied()
        return self.choose_kernel(spec) if self.choose_kernel else self.name

    def function(self) -> Callable:
        """The kernel module's entry point (importing, and so compiling, on first use)."""
        run = _RUNNERS.get(self.runner)
        if run is None:
            module_name, func_name = self.runner.split(":")
            module = __import__(f"numbaconv.{module_name}", fromlist=[func_name])
            run = _RUNNERS[self.runner] = getattr(module, func_name)
        return run

    def run(self, spec: ConvSpec, x, weight, bias, match_torch_nonfinite=False,
            post=NO_EPILOGUE):
        """Compute on the CPU; ``match_torch_nonfinite`` asks for torch's inf/NaN propagation
        exactly (algorithms whose own propagation differs then fall back, see
        winograd.run_tile); ``post``: an activation to finish the output with
        (:mod:`numbaconv.epilogue`). GPU algorithms run through ``numbaconv.cuda.execute``."""
        run = self.function()
        if self.fuses_epilogue:
            return run(spec, x, weight, bias, post)
        if self.mixes_nonfinite:
            out = run(spec, x, weight, bias, match_torch_nonfinite)
        else:
            out = run(spec, x, weight, bias)
        return epilogue.apply(out, post)

    def prepare(self, spec: ConvSpec, match_torch_nonfinite=False,
                post=NO_EPILOGUE) -> Callable:
        """``run`` for this spec as a function of (x, weight, bias) alone, for calls that
        repeat it: the kernel module's ``prepare(spec, post)`` when it has one (choices made
        once), else a closure over ``run``."""
        prepare = getattr(sys.modules[self.function().__module__], "prepare", None)
        if prepare is not None and self.fuses_epilogue:
            return prepare(spec, post)
        return lambda x, weight, bias: self.run(spec, x, weight, bias, match_torch_nonfinite,
                                                post)


_RUNNERS: dict = {}  # Algorithm.runner -> the imported function


#: The CPU algorithms and the GPU ones, by name; one name means the same method on both.
REGISTRY: dict[str, Algorithm] = {}
CUDA_REGISTRY: dict[str, Algorithm] = {}
REGISTRIES = {"cpu": REGISTRY, "cuda": CUDA_REGISTRY}


def register(algorithm: Algorithm) -> Algorithm:
    REGISTRIES[algorithm.device][algorithm.name] = algorithm
    return algorithm


def padded_copy_bytes(spec: ConvSpec) -> int:
    """The input copy that a non-zero ``padding_mode`` materialises (0 for zeros)."""
    if spec.padding_mode == "zeros":
        return 0
    elements = spec.batch * spec.in_channels * spec.padded_height * spec.padded_width
    return elements * spec.itemsize


# --------------------------------------------------------------------------- direct


#: Direct: accumulator elements per job (an L1-sized block of output rows).
DIRECT_BLOCK_ELEMENTS = 4096


def direct_block_rows(spec: ConvSpec) -> int:
    cols_q = -(-spec.padded_width // spec.stride_w)
    return max(1, min(spec.out_height, DIRECT_BLOCK_ELEMENTS // cols_q))


def _phase_split_bytes(spec: ConvSpec) -> int:
    """The zero-padded, stride-phase-split copy of the input that direct and GEMM read."""
    rows_q = -(-spec.padded_height // spec.stride_h)
    cols_q = -(-spec.padded_width // spec.stride_w)
    elements = spec.batch * spec.in_channels * spec.stride_h * spec.stride_w * rows_q * cols_q
    return elements * spec.itemsize


#: Direct: output channels per group from which the register-tiled kernel runs
#: (``direct.tiled_conv2d``; a tile holds 6 channels, fewer would leave it mostly idle).
TILED_MIN_CHANNELS = 4


def direct_tile_rows(spec: ConvSpec) -> int:
    """Output channels per register tile of ``direct.tiled_conv2d``: 6, or 4 when tiles of
    4 pad the channels per group at least 10% less (8, 16, 32: ResNeXt and RegNet
    groups). A tile of 6 does 6 multiply-adds per broadcast input against 4, so it keeps
    the layers where both pad alike (12, 24, 64...)."""
    kg = spec.out_channels_per_group
    return 4 if -(-kg // 4) * 4 * 1.1 < -(-kg // 6) * 6 else 6


#: Input width below which depthwise 3x3 stride-1 layers stack their images per channel
#: (``depthwise3x3_stacked``). Measured, MobileNet shapes at batch 8, stacked against
#: row by row: 7x7 0.34 ms vs 1.12, 14x14 0.36 vs 1.41, 28x28 0.49 vs 0.60, 56x56 1.15
#: vs 0.65, 112x112 1.00 vs 0.58.
DEPTHWISE_STACKED_BELOW_WIDTH = 48
#: Padded planes up to which depthwise layers with at least a vector of channels run
#: channels-last (``depthwise_channels_last``), except 3x3 stride-1 layers from
#: DEPTHWISE_STACKED_BELOW_WIDTH wide, whose row stencil wins. Measured (2 threads,
#: AVX-512) against the other kernels: batch 8, 3x3 7x7 1024 ch 0.19 ms vs 0.34-0.41
#: (stacked), 5x5 14x14 512 ch 0.47 vs 2.36, 7x7 1152 ch 0.33 vs 4.12 (general kernel);
#: batch 1, 5x5 28x28 240 ch 0.12 vs 0.31, 7x7 28x28 192 ch 0.14 vs 0.32, 7x7 56x56 96 ch
#: 0.27 vs 0.40, 3x3 stride 2 112x112 96 ch 0.23 vs 0.32; the 3x3 stride-1 stencil on
#: 112x112 32 ch: 0.10 against 0.14. Beyond, each job's three plane buffers outgrow L2.
DEPTHWISE_CHANNELS_LAST_MAX_PLANE = 128 * 128
#: The most elements one channel's stack may hold (a buffer per thread, twice): 8
#: padded 226x226 images (MobileNet's stride-2 layers at 224 input, batch 8) and more.
DEPTHWISE_STACKED_ELEMENTS = 1 << 20

DIRECT_KERNELS = {
    "depthwise3x3_rows": "depthwise 3x3, stride 1, on wide images: a stencil read straight "
                         "from the input, one plane per job, rows of outputs vectorised",
    "depthwise_channels_last": "depthwise on small planes: a vector of channels per job, "
                               "turned channels-last, one vector of outputs per position",
    "depthwise3x3_stacked": "depthwise 3x3 on small images: a channel's images stacked in "
                            "one padded buffer, one stencil pass at stride 1",
    "depthwise_rows": "depthwise, the rest: each job pads and phase-splits the input rows "
                      "it reads, taps fused in vector loops",
    "tiled": "implicit GEMM over the padded, stride-phase-split input: register tiles of "
             "6 (or 4) output channels by a panel of positions, each tap read in place",
    "grouped_tiled": "implicit GEMM per group: each job gathers its group's padded, "
                     "phase-split input rows into a buffer of its own, then register tiles",
    "channel_rows": "1-3 output channels per group: one output channel per job, taps fused "
                    "in vector loops over the padded, phase-split input",
}


def direct_kernel(spec: ConvSpec) -> str:
    """The kernel the ``direct`` algorithm runs for ``spec`` (``direct.run`` dispatches on
    it; :data:`DIRECT_KERNELS` says what each does). Depthwise layers (one input and one
    output channel per group) by image size and kernel, see the constants above; other
    layers ``tiled`` (``grouped_tiled`` with groups) from TILED_MIN_CHANNELS output
    channels per group, else ``channel_rows``."""
    depthwise = spec.in_channels_per_group == 1 and spec.out_channels_per_group == 1
    if depthwise:
        three = (spec.kernel_height == spec.kernel_width == 3
                 and spec.dilation_h == spec.dilation_w == 1)
        if three and spec.stride_h == spec.stride_w == 1 \
                and spec.in_width >= DEPTHWISE_STACKED_BELOW_WIDTH:
            return "depthwise3x3_rows"
        if spec.in_channels >= isa.lanes(spec.itemsize) and \
                spec.padded_height * spec.padded_width <= DEPTHWISE_CHANNELS_LAST_MAX_PLANE:
            return "depthwise_channels_last"
        if three and spec.stride_h <= 2 and spec.stride_w <= 2 and \
                spec.batch * spec.padded_height * spec.padded_width <= DEPTHWISE_STACKED_ELEMENTS:
            return "depthwise3x3_stacked"
        return "depthwise_rows"
    if spec.out_channels_per_group >= TILED_MIN_CHANNELS:
        return "grouped_tiled" if spec.groups > 1 else "tiled"
    return "channel_rows"


def _direct_workspace(spec: ConvSpec) -> int:
    """Scratch of the kernel :func:`direct_kernel` names, at most (every thread busy)."""
    threads = config.CPU_COUNT
    kernel = direct_kernel(spec)
    cols_q = -(-spec.padded_width // spec.stride_w)
    block_rows = direct_block_rows(spec)
    block = block_rows * cols_q  # one accumulator per thread
    panel = isa.panel_positions(spec.itemsize)
    if kernel in ("tiled", "grouped_tiled"):
        tile_rows = -(-spec.out_channels_per_group // 6) * 6  # at most (tiles of 4 pad less)
        slack = panel + cols_q  # what the last panel may read (direct.tiled_slack)
        accumulators = threads * tile_rows * (block + panel)
        if kernel == "tiled":  # a padded, phase-split copy of the whole input
            return (_phase_split_bytes(spec) + slack + accumulators) * spec.itemsize
        # per thread its group's rows (direct.grouped_gathers), one input plane + a zero;
        # the gather indices (int64, kept per spec) for every block of rows
        rows_local = block_rows + ((spec.kernel_height - 1) * spec.dilation_h) // spec.stride_h
        plane = spec.stride_h * spec.stride_w * rows_local * cols_q
        local = spec.in_channels_per_group * plane + slack + spec.in_height * spec.in_width + 1
        gathers = -(-spec.out_height // block_rows) * plane * 8
        return (accumulators + threads * local) * spec.itemsize + gathers
    if kernel == "channel_rows":
        return (_phase_split_bytes(spec) + threads * block) * spec.itemsize
    # depthwise: no input copy; each thread's buffers
    if kernel == "depthwise_rows":  # the rows its block reads, padded and phase split
        reach = ((spec.kernel_height - 1) * spec.dilation_h) // spec.stride_h + 1
        local = spec.stride_h * spec.stride_w * (block_rows + reach) * cols_q + block
    elif kernel == "depthwise3x3_stacked":  # a channel of every image, padded, and its outputs
        lanes = isa.lanes(spec.itemsize)
        local = 2 * (spec.batch * spec.padded_height * spec.padded_width + 2 * lanes
                     + 2 * spec.padded_width)
    elif kernel == "depthwise_channels_last":  # a vector of channels: input, grid, output
        local = isa.lanes(spec.itemsize) * (
            spec.in_height * spec.in_width + spec.padded_height * spec.padded_width
            + spec.out_height * spec.out_width + spec.kernel_height * spec.kernel_width + 1)
    else:  # depthwise3x3_rows: a copy of the three input rows a padded output row reads
        local = 3 * spec.in_width
    return threads * local * spec.itemsize


register(Algorithm(
    name="direct", device="cpu",
    summary="direct loops vectorised along blocks of output rows; runs every spec",
    supports=lambda spec: None, workspace_bytes=_direct_workspace,
    runner="cpu.direct:run", kernels=DIRECT_KERNELS, choose_kernel=direct_kernel,
    fuses_epilogue=True,
))


# --------------------------------------------------------------------------- gemm

#: GEMM: bytes of unfolded input per block, sized to stay in a core's L2 cache.
GEMM_BLOCK_BYTES = 512 * 1024


def gemm_block_rows(spec: ConvSpec) -> int:
    """Output rows per GEMM block: the unfolded block fills about GEMM_BLOCK_BYTES."""
    depth = spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    rows = GEMM_BLOCK_BYTES // (depth * spec.out_width * spec.itemsize)
    return max(1, min(rows, spec.out_height))


#: tap_tiles runs a layer when the (position, tap) pairs it computes are at most this
#: share of all of them (the rest read only padding, and it skips them).
TAP_WORK_AT_MOST = 0.7


#: While every call's weights are new (a training step: ``config.fresh_weights``),
#: tap_tiles packs them into its panels on every call: it runs only where the
#: multiply-adds it skips come to at least this many per weight. Measured (2 threads,
#: AVX2), batch 8, 512 -> 512 3x3 on 2x2 (18 skipped per weight): tap_tiles with its
#: packing 22 ms, im2col_whole 2.8; at batch 32 (71 per weight) 32 against 13.5;
#: 256 -> 256 on 4x4 at batch 8 (39 per weight) 3.8 against 2.6.
TAP_TILES_FRESH_MIN_SKIPPED_PER_WEIGHT = 1000


def tap_panels_pay(spec: ConvSpec) -> bool:
    """False while weights are new on every call and tap_tiles would skip too few
    multiply-adds to pay for packing them (TAP_TILES_FRESH_MIN_SKIPPED_PER_WEIGHT)."""
    if not config.weights_are_fresh():
        return True
    positions = spec.batch * spec.out_height * spec.out_width
    return (1 - tap_work(spec)) * positions >= TAP_TILES_FRESH_MIN_SKIPPED_PER_WEIGHT


def inside_range(out_size, in_size, pad, stride, offset):
    """Output indices [lo, hi) whose tap at ``offset`` (dilation * index) reads inside the
    input: 0 <= o * stride + offset - pad < in_size."""
    shift = offset - pad
    lo = min(out_size, max(0, -(shift // stride)))
    hi = min(out_size, max(lo, -(-(in_size - shift) // stride)))
    return lo, hi


@functools.lru_cache(maxsize=256)
def tap_work(spec: ConvSpec) -> float:
    """The share of the (output position, kernel tap) pairs whose tap reads inside the
    input, not padding: what ``tap_tiles`` computes (the rows of the rest it skips)."""
    rows = sum(hi - lo for lo, hi in (
        inside_range(spec.out_height, spec.in_height, spec.pad_top, spec.stride_h,
                      r * spec.dilation_h) for r in range(spec.kernel_height)))
    cols = sum(hi - lo for lo, hi in (
        inside_range(spec.out_width, spec.in_width, spec.pad_left, spec.stride_w,
                      s * spec.dilation_w) for s in range(spec.kernel_width)))
    return rows * cols / max(1, spec.out_height * spec.out_width
                             * spec.kernel_height * spec.kernel_width)


def channels_last_geometry(spec: ConvSpec, itemsize: int) -> tuple[int, int, int, int, int]:
    """(padded_width, padded_out_width, padded_k, panel, n_panels) of ``tap_tiles``'s
    buffers (see :mod:`numbaconv.cpu.channels_last`): the input's rows padded with zero
    columns to every column a tile reads, the output's to whole tiles of ``isa.MR``
    positions, its channels to whole vectors, in panels of ``isa.NV`` vectors."""
    lanes = isa.lanes(itemsize)
    panel = isa.NV * lanes
    padded_k = -(-spec.out_channels // lanes) * lanes
    n_panels = -(-padded_k // panel)
    padded_out_width = -(-spec.out_width // isa.MR) * isa.MR
    reach = (padded_out_width - 1) * spec.stride_w + \
        (spec.kernel_width - 1) * spec.dilation_w + 1
    padded_width = max(reach, spec.pad_left + spec.in_width)
    return padded_width, padded_out_width, padded_k, panel, n_panels


def channels_last_bytes(spec: ConvSpec) -> int:
    """``tap_tiles``'s scratch: the channels-last input and output and the weight panels."""
    padded_width, padded_out_width, padded_k, panel, n_panels = \
        channels_last_geometry(spec, spec.itemsize)
    taps = spec.kernel_height * spec.kernel_width
    return spec.itemsize * (spec.batch * spec.in_height * padded_width * spec.in_channels
                            + spec.batch * spec.out_height * padded_out_width * padded_k
                            + taps * n_panels * panel * spec.in_channels)


def gemm_kernel(spec: ConvSpec) -> str:
    """The kernel the ``gemm`` algorithm runs for ``spec`` (``gemm.run`` dispatches on it):

    * ``vector_products``: 1x1 convolutions of 1x1 images, one dot product per output;
    * ``pointwise``: other unpadded 1x1 layers, the images multiplied in place (strided
      ones on a copy of the pixels they read);
    * ``tap_tiles``: ungrouped layers whose taps read mostly padding (computing at most
      ``TAP_WORK_AT_MOST`` of the (position, tap) pairs when the ones that read only
      padding are skipped: DeepLab's dilated 3x3 layers), register tiles over a
      channels-last copy of the input, tap by tap;
    * ``im2col_whole``: the rest, when every image's im2col matrix together takes at most
      ``GEMM_WHOLE_UNFOLD_BYTES``: unfolded at once, then multiplied as the pointwise
      kernel multiplies its images (jobs cut by output channels or positions, so the
      weights are read once per job, not once per block of rows);
    * ``im2col``: the rest, unfolded in L2-sized blocks of output rows.
    """
    if spec.is_vector_product:
        return "vector_products"
    if spec.is_unpadded_1x1:
        return "pointwise"
    if spec.groups == 1 and spec.padding_mode == "zeros" and \
            tap_work(spec) <= TAP_WORK_AT_MOST and tap_panels_pay(spec):
        return "tap_tiles"
    if _unfolded_bytes(spec) <= GEMM_WHOLE_UNFOLD_BYTES:
        return "im2col_whole"
    return "im2col"


#: The most bytes of im2col matrix (all images) the ``im2col_whole`` kernel unfolds.
GEMM_WHOLE_UNFOLD_BYTES = 8 << 20


def _unfolded_bytes(spec: ConvSpec) -> int:
    return (spec.in_channels * spec.kernel_height * spec.kernel_width
            * gemm_whole_columns(spec) * spec.itemsize)


def gemm_whole_columns(spec: ConvSpec) -> int:
    """Row length of the ``im2col_whole`` kernel's matrices: every image's output positions,
    rounded up to whole vectors so that every row starts on a vector boundary (the
    product's loads then never straddle cache lines: AVX2, 2 threads, AlexNet's 5x5 64 ->
    192 product on 27x27 3.7 ms with rows of 729 values, 3.05 with 736)."""
    lanes = isa.lanes(spec.itemsize)
    return -(-spec.batch * spec.out_height * spec.out_width // lanes) * lanes


def _matmul_work_bytes(depth: int, itemsize: int) -> int:
    """Bytes of microkernel.matmul's ``work`` buffer for ``depth`` (workspace_size, with its
    widest tiles: 6 rows, 4 vectors of 16 lanes, depth blocks of 256, and a block of 192
    columns of b copied into panels)."""
    block = min(depth, 256)
    return (6 * block + 6 * 64 + 16 * block + 192 * block) * itemsize


def _gemm_workspace(spec: ConvSpec) -> int:
    threads = config.CPU_COUNT
    kernel = gemm_kernel(spec)
    if kernel == "vector_products":
        return 0
    if kernel == "tap_tiles":
        return channels_last_bytes(spec)
    taps = spec.kernel_height * spec.kernel_width
    edges = threads * _matmul_work_bytes(spec.in_channels_per_group * taps, spec.itemsize)
    if kernel == "im2col_whole":  # the whole im2col matrix (from x itself), the product
        columns = gemm_whole_columns(spec)
        product = (columns != spec.out_height * spec.out_width) * spec.out_channels \
            * columns * spec.itemsize  # unless it is the output itself
        return _unfolded_bytes(spec) + edges + product
    if kernel == "pointwise":  # the images are the matrices: a matmul edge buffer per thread
        sampled = 0 if spec.is_pointwise else \
            spec.batch * spec.in_channels * spec.out_height * spec.out_width
        return edges + sampled * spec.itemsize
    columns = gemm_block_rows(spec) * spec.out_width
    depth = spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    blocks = threads * (depth + spec.out_channels_per_group) * columns * spec.itemsize
    return _phase_split_bytes(spec) + blocks


GEMM_KERNELS = {
    "vector_products": "1x1 convolution of 1x1 images: one dot product per output, "
                       "vectorised along the input channels",
    "pointwise": "unpadded 1x1 layer: each image is the matrix (a strided layer's pixels "
                 "copied together first), multiplied in jobs of output channels or positions",
    "tap_tiles": "register tiles over a channels-last copy of the input, tap by tap (the "
                 "tile reads its pixels in place); rows of a tap that read only padding "
                 "skipped",
    "im2col_whole": "every image's im2col matrix unfolded at once, then one matrix product "
                    "cut by output channels or positions (weights read once per job)",
    "im2col": "im2col in L2-sized blocks of output rows, a matrix product per block",
}

register(Algorithm(
    name="gemm", device="cpu",
    summary="im2col + BLAS per block of output pixels, in L2-sized blocks; runs every spec",
    supports=lambda spec: None, workspace_bytes=_gemm_workspace,
    runner="cpu.gemm:run", kernels=GEMM_KERNELS, choose_kernel=gemm_kernel,
    fuses_epilogue=True,
))


# --------------------------------------------------------------------------- weight gradients

#: Output channels per group from which a weight gradient runs as matrix products
#: (``weight_products``); with fewer, a product a column or two wide would pad each to a
#: whole vector, and one dot product per weight (``weight_taps``) runs instead.
WEIGHT_GRAD_PRODUCT_MIN_CHANNELS = 8
#: The most bytes of im2col matrix ``weight_products`` unfolds at once (whole images;
#: at least one).
WEIGHT_GRAD_UNFOLD_BYTES = 16 << 20
#: Output positions per image from which a pointwise layer's weight gradient, as
#: ``weight_dots``, takes each image's rows in place; on smaller planes the images of a
#: chunk are copied side by side first, so that each pass runs long enough.
WEIGHT_GRAD_IN_PLACE_MIN_POSITIONS = 1024

#: Bytes of the smaller side of a group's weight gradient (its output channels, or its
#: input channels x taps) below which it runs as dot products of rows (``weight_dots``):
#: under one panel of the matrix product's register tile (NV vectors) the product pads
#: every panel with zero columns and transposes both sides. Measured (AVX-512, 2
#: threads, batch 8): RegNet's 208 channels in groups of 8, 3x3 on 14x14, 1.2 ms of
#: product + 0.2 of transposes -> 0.33 ms; 96 -> 24 1x1 on 28x28 0.55 + 0.07 -> 0.19;
#: 256 -> 32 1x1 on 28x28, whole gradient 3.5 -> 1.3 ms; with 160 and more rows on each
#: side the products win back (1024 -> 256 1x1 on 14x14: 5.1 against 6.0 ms).
WEIGHT_GRAD_DOTS_MAX_BYTES = isa.NV * isa.VECTOR_BYTES
#: Bytes of the rows ``weight_dots`` keeps in L2 while the other side's rows pass over
#: them (a group's rows of the smaller side, a block of each at a time).
WEIGHT_GRAD_DOTS_HELD_BYTES = 256 << 10

WEIGHT_GRAD_KERNELS = {
    "weight_dots": "per group, dot products of the output gradient's rows with the "
                   "im2col matrix's rows (the input's own rows for a pointwise layer; for an "
                   "ungrouped layer, the rows each tap reads in the padded input, in place), "
                   "4 x 4 at a time, straight into the weights' layout: nothing transposed",
    "weight_winograd": "3x3 at stride 1: Winograd F(4x4, 3x3)'s adjoint, the input's and "
                       "the gradient's 6x6 tile transforms multiplied position by position "
                       "(one matrix product over the tiles each), a quarter of the "
                       "multiply-adds",
    "weight_tiles": "register tiles of input channels by output channels over the padded, "
                    "phase-split input read in place, the depth running over positions; "
                    "one partial sum per thread",
    "weight_products": "per group, the output gradient's rows times the im2col matrix's "
                       "(a pointwise layer's input rows in place), a chunk of images at a "
                       "time: one register-tiled matrix product, its columns transposed as "
                       "they are packed",
    "depthwise_weight_lanes": "depthwise layers on small planes: each job's channels turned "
                              "channels-last, one vectorised multiply-add per position and "
                              "tap",
    "weight_taps": "one dot product per weight over the padded, stride-phase-split input, "
                   "summed along rows of partial sums",
    "outer_products": "1x1 layers on 1x1 images: grad_output^T (K, N) @ input (N, C) as "
                      "the sum of N outer products, in blocks of columns (a product a few "
                      "rows deep: nothing to tile or pack)",
}


#: Input channels and output positions per image from which an ungrouped layer with more
#: than one tap runs its weight gradient as ``weight_tiles``: a tile holds 6 channels, and
#: its depth runs over the positions of one image (a handful would leave it mostly
#: loading and storing). Measured (2 threads, AVX-512, batch 8, time / torch's), tiles
#: against products: 64 -> 64 3x3 on 56x56 1.24 / 1.44, 128 -> 128 3x3 stride 2 on
#: 56x56 1.59 / 1.72; 1x1 256 -> 64 on 56x56 1.82 / 1.45 (products, whose im2col is a
#: copy of the input). Since the products' jobs are cut by columns, they win on planes
#: under 32x32 (Zen 4, the same process taking turns, ms): 160 -> 320 3x3 on 14x14
#: 16.1 / 9.9, 256 -> 256 on 14x14 13.8 / 11.5, 32 -> 96 on 28x28 4.1 / 3.0, 128 -> 128
#: on 28x28 13.2 / 12.2, 512 -> 512 on 7x7 13.3 / 13.2; 64 -> 64 on 16x16 1.18 / 1.28
#: (tiles); and tiles still on 56x56: 64 -> 64 13.3 / 14.4, 128 -> 128 39.7 / 44.5.
WEIGHT_GRAD_TILES_MIN_CHANNELS = 16
WEIGHT_GRAD_TILES_MIN_POSITIONS = 32 * 32
#: Smaller planes, from this many outputs per image, take ``weight_tiles`` too where
#: each thread's partial sums (taps x C x K values) stay within
#: WEIGHT_GRAD_TILES_MAX_PARTIAL_BYTES (about a core's L2: every job adds onto all of
#: them), the output channels fill the tiles' panels of NV vectors
#: (WEIGHT_GRAD_TILES_MIN_PANEL_FILL) and the (image, positions) jobs number at least
#: WEIGHT_GRAD_TILES_MIN_JOBS_PER_CORE a core. Measured (Zen 4, AVX-512, 2 threads,
#: batch 8, 3x3, ms, tiles / products, torch in brackets): ResNet-18's 64 -> 64 on 16x16
#: 1.11 / 1.62 (0.85), 128 -> 128 on 8x8 1.66 / 2.83 (1.30), 64 -> 128 stride 2 0.91 /
#: 1.53 (0.87), 96 -> 128 on 14x14 2.56 / 2.66, 128 -> 128 on 28x28 15.3 / 17.1; larger
#: partial sums go to the products: 256 -> 256 on 8x8 7.30 / 6.47, 160 -> 320 on 14x14
#: 14.0 / 10.1, 512 -> 512 on 7x7 29.9 / 14.0 (AVX2: 96 -> 208 on 14x14 6.5 / 5.7); and
#: part-filled panels: 32 -> 96 on 28x28 (96 of 128 lanes) 3.99 / 3.21.
WEIGHT_GRAD_TILES_SMALL_MIN_POSITIONS = 8 * 8
WEIGHT_GRAD_TILES_MAX_PARTIAL_BYTES = 640 << 10
WEIGHT_GRAD_TILES_MIN_PANEL_FILL = 0.9
WEIGHT_GRAD_TILES_MIN_JOBS_PER_CORE = 4
#: Output channels up to which an ungrouped layer with whole tiles of input channels
#: (MR or more) takes ``weight_tiles`` on any plane: a product's im2col unfold writes
#: C * taps values per position, which its product then uses for only 2 * K flops each.
#: Measured (AVX2, 2 threads, taking turns, tiles / products, ms): LeNet's 6 -> 16 5x5 on
#: 14x14 at batch 64 0.87 / 1.64; batch 8: 32 -> 16 5x5 on 28x28 2.0 / 4.7, DenseNet's
#: 128 -> 32 3x3 on 28x28 6.2 / 10.6, on 14x14 1.9 / 3.1, on 7x7 0.89 / 1.18, 16 -> 16
#: on 14x14 0.46 / 0.54; with more output channels it varies (64 -> 64 on 14x14 1.49 /
#: 1.68, 16 -> 48 on 28x28 1.81 / 1.60, 96 -> 208 on 14x14 6.5 / 5.7).
WEIGHT_GRAD_TILES_NARROW_CHANNELS = 32
#: The least share of a ``weight_tiles`` tile's multiply-adds that make weights (rows
#: that are weights, times output channels of whole vectors) from which a layer with
#: fewer input channels than a tile's rows (one grey channel, three colours) takes the
#: tiles (see :func:`weight_tile_rows`); below it, ``weight_dots``. Measured (batch 64,
#: 28 x 28, 2 threads, ms, tiles / dots, torch in brackets): LeNet's 1 -> 6 5x5, 0.62 of
#: the tile on AVX2 0.70 / 0.70 (1.75), 0.31 on AVX-512 0.77 / 0.31 (0.36); 4 -> 16 5x5
#: (batch 32), 0.83, AVX-512 0.94 / 0.93; batch 8, AVX-512: ResNet's 7x7 stem on 64x64
#: colour images at stride 2 (0.98 of the tile) 1.1 / 1.7 (0.9-1.5), 3 -> 64 3x3 on 32x32
#: (0.9) 0.31-0.37 / 0.33-0.38 (0.33-0.40).
WEIGHT_GRAD_TILES_MIN_TAP_FILL = 0.6
#: Output positions per image up to which a depthwise layer's weight gradient runs
#: vectorised across channels (``depthwise_weight_lanes``); on larger planes the rows are
#: long enough to vectorise along (``weight_taps``). Measured (batch 8, 2 threads):
#: AVX-512, 1152 channels on 7x7 4.3 -> 0.4 ms; AVX2, lanes against taps: 576 channels
#: on 14x14 3.2 / 6.1 ms, 58 on 28x28 1.8 / 1.2, 72 on 56x56 stride 2 (28x28 outputs)
#: 3.8 / 2.6, 32 on 112x112 16.4 / 5.1.
WEIGHT_GRAD_LANES_MAX_POSITIONS = 16 * 16
#: Channels per ``depthwise_weight_lanes`` job at most (a few vectors of them).
DEPTHWISE_LANE_BLOCK = 64


def depthwise_lane_block(channels: int, threads: int, itemsize: int) -> int:
    """Channels per ``depthwise_weight_lanes`` job: whole vectors, at most
    DEPTHWISE_LANE_BLOCK, as even a share of the channels among the threads as whole
    vectors allow (72 channels on 2 threads in blocks of 64 left one thread 8 of them)."""
    lanes = isa.lanes(itemsize)
    jobs = threads * -(-channels // (threads * DEPTHWISE_LANE_BLOCK))
    return min(DEPTHWISE_LANE_BLOCK, -(-(-(-channels // jobs)) // lanes) * lanes)
#: Bytes of output gradient rows per ``weight_tiles`` job (kept in L2 for every tap).
WEIGHT_GRAD_CHUNK_BYTES = 256 << 10


#: Output tiles (4x4, over the batch) from which a 3x3 stride-1 layer's weight gradient
#: runs ``weight_winograd``: its 36 matrix products are as deep as there are tiles, and
#: with few of them packing the panels outweighs the products. Measured (Zen 4, AVX-512,
#: 2 threads, ms, Winograd / what ran before, torch's in brackets): batch 8, 64 -> 64 on
#: 16x16 (128 tiles) 0.59 / 0.92 (1.00), 128 -> 128 on 8x8 (32) 0.64 / 1.31 (1.15),
#: 256 -> 256 on 4x4 (8) 1.15 / 1.04.
WINOGRAD_WEIGHT_GRAD_MIN_TILES = 32
#: And from which K * C / (C + 2K) (C input, K output channels): the products'
#: multiply-adds per value the transforms write (C per tile for the input, 2K for the
#: gradient, transposed once), which must pay for those passes. Measured as above, batch
#: 8: 96 -> 96 on 28x28 (32) 3.4 / 8.2, 256 -> 256 on 56x56 74 / 169, 64 -> 64 on 224x224
#: 149 / 157, 48 -> 48 on 28x28 (16) 3.2 / 3.8, 64 -> 32 on 28x28 and 56x56 (16) 0.90-0.98
#: of the time; below, 32 -> 64 (12.8) 2.0x, 32 -> 32 (10.7) 1.1-1.8x, 16 -> 16 4x.
WINOGRAD_WEIGHT_GRAD_MIN_DEPTH = 16
#: Scratch bytes of a chunk of images (their transformed input and gradient) that
#: ``weight_winograd`` aims for: ResNet's 64 -> 64 on 56x56 takes 3.4 MB an image, and a
#: chunk within the L3 cache is multiplied while its transforms are still there. A
#: layer whose single image needs more than WINOGRAD_WEIGHT_GRAD_MAX_IMAGE_BYTES runs
#: another kernel.
WINOGRAD_WEIGHT_GRAD_CHUNK_BYTES = 8 << 20
WINOGRAD_WEIGHT_GRAD_MAX_IMAGE_BYTES = 256 << 20


def _f4_tiles_per_image(spec: ConvSpec) -> int:
    """4x4 output tiles of one image (dilation 1)."""
    return -(-spec.out_height // 4) * -(-spec.out_width // 4)


def _winograd_weight_grad_image_bytes(spec: ConvSpec) -> int:
    """``weight_winograd``'s scratch bytes per image: the transformed input (36 values a
    tile and input channel), the gradient channels last, and its transform twice."""
    tiles = _f4_tiles_per_image(spec)
    return spec.itemsize * (36 * tiles * (spec.in_channels + 2 * spec.out_channels)
                            + spec.out_height * spec.out_width * spec.out_channels)


def winograd_weight_grad_chunk(spec: ConvSpec) -> int:
    """Images per ``weight_winograd`` chunk (see WINOGRAD_WEIGHT_GRAD_CHUNK_BYTES)."""
    per_image = _winograd_weight_grad_image_bytes(spec)
    return max(1, min(spec.batch, WINOGRAD_WEIGHT_GRAD_CHUNK_BYTES // per_image))


def _weight_winograd_pays(spec: ConvSpec) -> bool:
    """3x3, stride 1, dilation 1, ungrouped, channels and tiles enough
    (WINOGRAD_WEIGHT_GRAD_MIN_DEPTH, _MIN_TILES), and one image's scratch within
    WINOGRAD_WEIGHT_GRAD_MAX_IMAGE_BYTES."""
    return ((spec.kernel_height, spec.kernel_width) == (3, 3)
            and spec.stride_h == spec.stride_w == 1 and spec.dilation_h == spec.dilation_w == 1
            and spec.groups == 1
            and spec.in_channels * spec.out_channels
            >= WINOGRAD_WEIGHT_GRAD_MIN_DEPTH * (spec.in_channels + 2 * spec.out_channels)
            and spec.batch * _f4_tiles_per_image(spec) >= WINOGRAD_WEIGHT_GRAD_MIN_TILES
            and _winograd_weight_grad_image_bytes(spec) <= WINOGRAD_WEIGHT_GRAD_MAX_IMAGE_BYTES)


def winograd_weight_grad_takes_tiles(spec: ConvSpec) -> bool:
    """Whether the weight gradient of ``spec`` is ``weight_winograd`` in one chunk: it
    then transforms the input tiles the forward pass's F(4x4) did, every image's at once
    (which a training step keeps for it: ``cpu.step_columns``)."""
    return (weight_grad_kernel(spec) == "weight_winograd"
            and winograd_weight_grad_chunk(spec) == spec.batch)


def weight_grad_kernel(spec: ConvSpec) -> str:
    """The kernel computing the weight gradient of ``spec`` (see WEIGHT_GRAD_KERNELS)."""
    return weight_grad_choice(spec)[0]


def weight_grad_choice(spec: ConvSpec) -> tuple[str, str]:
    """(kernel, why) of the weight gradient of ``spec``: what ``nn.grad.plan_weight`` shows."""
    taps = spec.kernel_height * spec.kernel_width
    positions = spec.out_height * spec.out_width
    if spec.is_vector_product:
        return "outer_products", ("1x1 on 1x1 images (squeeze-and-excitation): the sum of N "
                                  "outer products of the gradient's and the input's rows")
    wide_plane = (spec.in_channels >= WEIGHT_GRAD_TILES_MIN_CHANNELS
                  and positions >= WEIGHT_GRAD_TILES_MIN_POSITIONS)
    narrow = spec.in_channels >= isa.MR and spec.out_channels <= WEIGHT_GRAD_TILES_NARROW_CHANNELS
    small_sums = spec.in_channels >= WEIGHT_GRAD_TILES_MIN_CHANNELS and _small_tile_sums(spec)
    few_channels = (spec.in_channels < isa.MR
                    and weight_tile_fill(spec) >= WEIGHT_GRAD_TILES_MIN_TAP_FILL)
    if _weight_winograd_pays(spec):
        return "weight_winograd", (f"3x3 at stride 1, {spec.in_channels} input and "
                                   f"{spec.out_channels} output channels, "
                                   f"{spec.batch * _f4_tiles_per_image(spec)} 4x4 output "
                                   f"tiles: Winograd F(4x4, 3x3)'s adjoint, 36 matrix products "
                                   f"over the tiles")
    if spec.groups == 1 and taps > 1 and (wide_plane or narrow or small_sums or few_channels):
        return "weight_tiles", (f"ungrouped, {spec.in_channels} input and {spec.out_channels} "
                                f"output channels, {taps} taps, {positions} outputs per image: "
                                f"register tiles over the input read in place, no im2col")
    if (spec.in_channels_per_group == spec.out_channels_per_group == 1
            and positions <= WEIGHT_GRAD_LANES_MAX_POSITIONS):
        return "depthwise_weight_lanes", (f"depthwise on {positions} outputs per image: "
                                          f"vectorised across channels, channels-last")
    if weight_dots_pay(spec):
        return "weight_dots", (f"{spec.out_channels_per_group} output channels by "
                               f"{spec.in_channels_per_group * taps} input channels x taps a "
                               f"group: too narrow for the matrix product's panels")
    if spec.out_channels_per_group >= WEIGHT_GRAD_PRODUCT_MIN_CHANNELS:
        return "weight_products", (f"{spec.out_channels_per_group} output channels per group: "
                                   f"one matrix product per group, of the gradient's rows and "
                                   f"the im2col matrix's")
    return "weight_taps", (f"{spec.out_channels_per_group} output channel(s) per group: one "
                           f"dot product per weight (a matrix product would pad each column "
                           f"to a whole vector)")


def _small_tile_sums(spec: ConvSpec) -> bool:
    """Whether a plane under WEIGHT_GRAD_TILES_MIN_POSITIONS outputs runs ``weight_tiles``
    (see WEIGHT_GRAD_TILES_SMALL_MIN_POSITIONS): enough positions, partial sums that
    stay in L2, full panels and enough jobs."""
    positions = spec.out_height * spec.out_width
    panel = isa.NV * isa.lanes(spec.itemsize)
    panel_fill = spec.out_channels / (-(-spec.out_channels // panel) * panel)
    partial_bytes = (spec.kernel_height * spec.kernel_width * spec.in_channels
                     * spec.out_channels * spec.itemsize)
    padded_k = -(-spec.out_channels // isa.lanes(spec.itemsize)) * isa.lanes(spec.itemsize)
    jobs = spec.batch * -(-positions // weight_grad_chunk(padded_k, spec.itemsize))
    return (positions >= WEIGHT_GRAD_TILES_SMALL_MIN_POSITIONS
            and partial_bytes <= WEIGHT_GRAD_TILES_MAX_PARTIAL_BYTES
            and panel_fill >= WEIGHT_GRAD_TILES_MIN_PANEL_FILL
            and jobs >= WEIGHT_GRAD_TILES_MIN_JOBS_PER_CORE * config.CPU_COUNT)


def weight_tile_rows(spec: ConvSpec) -> int:
    """Rows of all ``weight_tiles`` tiles, weights or not: the weights' rows (C * kH * kW)
    in whole tiles (``weight_grad.tile_plan``)."""
    weights = spec.in_channels * spec.kernel_height * spec.kernel_width
    return -(-weights // isa.MR) * isa.MR


def weight_tile_fill(spec: ConvSpec) -> float:
    """The share of ``weight_tiles``' multiply-adds that make weights: its rows that are
    weights times its output channels that are the layer's (whole vectors of them)."""
    lanes = isa.lanes(spec.itemsize)
    lane_fill = spec.out_channels / (-(-spec.out_channels // lanes) * lanes)
    weights = spec.in_channels * spec.kernel_height * spec.kernel_width
    return weights / weight_tile_rows(spec) * lane_fill


def weight_dots_shifted(spec: ConvSpec) -> bool:
    """Whether ``weight_dots`` reads the rows each tap sees in the padded, phase-split
    input in place (ungrouped layers with more than one tap) rather than an im2col
    matrix's rows (``row_dots.shifted_row_dots``)."""
    return spec.groups == 1 and not spec.is_pointwise


def weight_dots_pay(spec: ConvSpec) -> bool:
    """Whether the weight gradient of ``spec`` runs as ``weight_dots``: a group's smaller
    side under WEIGHT_GRAD_DOTS_MAX_BYTES, depthwise layers excepted (a 1 x taps output
    per group would leave most of each 4 x 4 tile idle)."""
    kg, cg = spec.out_channels_per_group, spec.in_channels_per_group
    side = min(kg, cg * spec.kernel_height * spec.kernel_width)
    return not kg == cg == 1 and side * spec.itemsize < WEIGHT_GRAD_DOTS_MAX_BYTES


def weight_dots_row_block(held_rows: int, itemsize: int) -> int:
    """Elements of each row that ``weight_dots`` takes per pass: ``held_rows`` rows of them
    (the second operand's, a group's) fill WEIGHT_GRAD_DOTS_HELD_BYTES, between 256 and
    4096 elements."""
    return max(256, min(4096, WEIGHT_GRAD_DOTS_HELD_BYTES // (max(1, held_rows) * itemsize)))


def weight_grad_chunk(padded_k: int, itemsize: int) -> int:
    """Positions per ``weight_tiles`` job: WEIGHT_GRAD_CHUNK_BYTES of gradient rows."""
    return max(64, min(1024, WEIGHT_GRAD_CHUNK_BYTES // (padded_k * itemsize)))


def weight_grad_chunk_images(spec: ConvSpec) -> int:
    """Images per im2col chunk of ``weight_products`` and ``weight_dots``: 1 where a
    pointwise layer's images, already their im2col matrices, are read in place (always by
    the products, by the dots on planes of WEIGHT_GRAD_IN_PLACE_MIN_POSITIONS or more)."""
    if spec.is_pointwise and (
            weight_grad_kernel(spec) == "weight_products"
            or spec.out_height * spec.out_width >= WEIGHT_GRAD_IN_PLACE_MIN_POSITIONS):
        return 1
    per_image = (spec.in_channels * spec.kernel_height * spec.kernel_width
                 * spec.out_height * spec.out_width * spec.itemsize)
    return max(1, min(spec.batch, WEIGHT_GRAD_UNFOLD_BYTES // max(1, per_image)))


def weight_grad_reads_im2col(spec: ConvSpec) -> bool:
    """Whether the weight gradient of ``spec`` multiplies the im2col matrix of every image
    at once (``weight_products`` or ``weight_dots`` in one chunk, not in place): the
    matrix a training step's forward pass can keep for it (``cpu.step_columns``)."""
    kernel = weight_grad_kernel(spec)
    return (kernel in ("weight_products", "weight_dots") and not spec.is_pointwise
            and not (kernel == "weight_dots" and weight_dots_shifted(spec))
            and weight_grad_chunk_images(spec) == spec.batch)


def weight_grad_reads_phase_split(spec: ConvSpec) -> bool:
    """Whether the weight gradient of ``spec`` reads the input padded and split by stride
    phase as a copy (``weight_tiles``, ``weight_taps``, the shifted ``weight_dots``; an
    unpadded stride-1 layer's is the input itself): the copy ``tiled_conv2d``'s forward
    pass makes too, which a training step can keep for it (``cpu.step_columns``)."""
    kernel = weight_grad_kernel(spec)
    copied = spec.stride_h > 1 or spec.stride_w > 1 or \
        spec.pad_top or spec.pad_bottom or spec.pad_left or spec.pad_right
    return bool(copied) and (kernel in ("weight_tiles", "weight_taps")
                             or (kernel == "weight_dots" and weight_dots_shifted(spec)))


def product_blocks(rows: int, cols: int, groups: int, threads: int, itemsize: int) -> tuple:
    """(block_rows, block_cols) of ``weight_products``' jobs on a (rows, cols) result per
    group: a job per group when there are groups enough for the threads, else each
    group's columns cut into whole panels, one block per thread, and its rows too where
    there are too few panels. A weight gradient's product runs deep (over every position
    of the batch) into a small output: each job packs the columns it multiplies, so
    cutting columns, not rows, packs each of them once (AVX2, 2 threads, 256 -> 1024 1x1
    on 14x14 at batch 8: rows cut in 4 jobs a thread 10.3 ms, in 1 a thread 6.6-8.4,
    columns cut in 2 blocks 5.2; torch 6.2-8.7).
    """
    if groups >= threads:
        return rows, cols
    wanted = -(-threads // groups)
    panel = isa.NV * isa.lanes(itemsize)
    col_blocks = max(1, min(wanted, cols // panel))
    block_cols = min(cols, -(-(-(-cols // col_blocks)) // panel) * panel)
    row_blocks = -(-wanted // col_blocks)
    block_rows = min(rows, -(-(-(-rows // row_blocks)) // isa.MR) * isa.MR)
    return block_rows, block_cols


def _product_share_work(rows: int, cols: int, groups: int, threads: int,
                        itemsize: int) -> int:
    """The most register-tile work (rows rounded up to MR, columns to whole panels) one
    thread gets from ``weight_products``' jobs (:func:`product_blocks`, consecutive jobs a
    share, as ``dispatch.share`` deals them) on a (rows, cols) result per group."""
    block_rows, block_cols = product_blocks(rows, cols, groups, threads, itemsize)
    panel = isa.NV * isa.lanes(itemsize)
    jobs = []
    for i0 in range(0, rows, block_rows):
        for j0 in range(0, cols, block_cols):
            jobs.append(-(-min(block_rows, rows - i0) // isa.MR) * isa.MR
                        * -(-min(block_cols, cols - j0) // panel) * panel)
    jobs *= groups
    shares = max(1, min(threads, len(jobs)))
    return max(sum(jobs[w * len(jobs) // shares:(w + 1) * len(jobs) // shares])
               for w in range(shares))


#: What transposing one weight of a product's result costs, in the product's
#: multiply-adds (a value moved about 1 ns, against ~100 multiply-adds a ns on a core
#: with AVX-512): ``weight_rows_from_im2col`` takes the im2col side's rows only where the
#: multiply-adds it saves outweigh the transpose of the result (ResNet's 512 -> 512 on
#: 2x2 saved 0.8% of the tiles, over 32 positions, and the 512 x 4608 transpose made the
#: gradient 1.4 -> 2.7 ms; AVX-512, 2 threads, batch 8).
WEIGHT_GRAD_TRANSPOSE_MULTIPLY_ADDS = 64
#: ``weight_rows_from_im2col`` leaves the side with fewer rows (the other packed into
#: panels, measured the faster on most layers) only where that side's busiest thread
#: gets more than this many times the other's register tiles.
WEIGHT_GRAD_SIDE_MAX_EXTRA_WORK = 1.25


def weight_rows_from_im2col(spec: ConvSpec, threads: int) -> bool:
    """Whether ``weight_products``/``weight_dots`` take their rows from the im2col
    matrix (the result, (Cg * kH * kW, Kg) a group, then transposed into the weights'
    layout) rather than from the output gradient.

    The dots take the side with more rows (the other's block stays in L2 while they
    pass). The products take the side with fewer rows (the other is packed into panels)
    unless the busiest thread's register tiles (rows padded to whole tiles, columns to
    whole panels, jobs as the threads share them) come to more than
    WEIGHT_GRAD_SIDE_MAX_EXTRA_WORK times those of the other side, and, to take the
    im2col side, the multiply-adds saved outweigh transposing the result
    (WEIGHT_GRAD_TRANSPOSE_MULTIPLY_ADDS). DenseNet's 160 -> 128 1x1 on 2 threads: as
    gradient rows its 160 columns were cut at 128, one thread getting 4 times the other's
    work; as im2col rows each thread takes 64 of the 128 columns (AVX-512, batch 8 on
    56x56: 9.1 -> 6.0 ms, torch 7.2; 192 -> 64 on 14x14 0.47 -> 0.33, torch 0.53).
    """
    kg = spec.out_channels_per_group
    depth = spec.in_channels_per_group * spec.kernel_height * spec.kernel_width
    if weight_grad_kernel(spec) == "weight_dots":
        return kg < depth
    as_grad = _product_share_work(kg, depth, spec.groups, threads, spec.itemsize)
    as_im2col = _product_share_work(depth, kg, spec.groups, threads, spec.itemsize)
    if depth < kg:  # the im2col side's rows, unless they leave a thread much more work
        return as_im2col <= WEIGHT_GRAD_SIDE_MAX_EXTRA_WORK * as_grad
    positions = spec.batch * spec.out_height * spec.out_width
    saved = (as_grad - as_im2col) * positions
    return (as_grad > WEIGHT_GRAD_SIDE_MAX_EXTRA_WORK * as_im2col
            and saved > WEIGHT_GRAD_TRANSPOSE_MULTIPLY_ADDS * spec.groups * kg * depth)


def weight_grad_workspace(spec: ConvSpec) -> int:
    """Scratch bytes of the weight-gradient kernel for ``spec``."""
    kernel = weight_grad_kernel(spec)
    if kernel == "outer_products":
        return spec.out_channels * spec.in_channels * spec.itemsize
    if kernel == "weight_winograd":  # a chunk's transforms; the products; the taps
        return (winograd_weight_grad_chunk(spec) * _winograd_weight_grad_image_bytes(spec)
                + spec.itemsize * (36 + 9) * spec.in_channels * spec.out_channels)
    if kernel == "weight_taps":
        return _phase_split_bytes(spec)
    if kernel == "depthwise_weight_lanes":  # per thread: a padded block, a gradient block
        return config.CPU_COUNT * DEPTHWISE_LANE_BLOCK * spec.itemsize * (
            spec.padded_height * spec.padded_width + spec.out_height * spec.out_width)
    if kernel == "weight_tiles":  # the input; the gradient; the partial sums
        lanes = isa.lanes(spec.itemsize)
        padded_k = -(-spec.out_channels // lanes) * lanes
        columns = -(-spec.padded_width // spec.stride_w)
        return (_phase_split_bytes(spec)
                + spec.batch * spec.out_height * columns * padded_k * spec.itemsize
                + (config.CPU_COUNT + 1) * weight_tile_rows(spec) * padded_k * spec.itemsize)
    if kernel == "weight_dots" and weight_dots_shifted(spec):  # the input; the gradient
        # widened to the input's columns; the partial sums
        columns = -(-spec.padded_width // spec.stride_w)
        weights = spec.out_channels * spec.in_channels * spec.kernel_height * spec.kernel_width
        return (_phase_split_bytes(spec)
                + spec.batch * spec.out_channels * spec.out_height * columns * spec.itemsize
                + (config.CPU_COUNT + 1) * weights * spec.itemsize)
    images = weight_grad_chunk_images(spec)
    positions = images * spec.out_height * spec.out_width
    in_place = spec.is_pointwise and images == 1  # (the image itself is the matrix)
    taps = spec.kernel_height * spec.kernel_width
    # the gradient's and the input's rows, images side by side, and the result to
    # transpose where the im2col side gives the rows (weight_grad._run_row_products)
    depth = spec.in_channels_per_group * taps
    transposed = weight_rows_from_im2col(spec, config.CPU_COUNT)
    work = 0 if kernel == "weight_dots" else \
        config.CPU_COUNT * _matmul_work_bytes(positions, spec.itemsize)
    return spec.itemsize * (positions * ((0 if images == 1 else spec.out_channels)
                                         + (0 if in_place else spec.in_channels * taps))
                            + transposed * spec.out_channels * depth) + work


# --------------------------------------------------------------------------- winograd


def _winograd_supports(spec: ConvSpec):
    if spec.kernel_height < 3 or spec.kernel_width < 3:
        return f"needs a kernel of at least 3x3, got {spec.kernel_height}x{spec.kernel_width}"
    if (spec.stride_h, spec.stride_w) != (1, 1):
        return f"needs stride 1, got {(spec.stride_h, spec.stride_w)}"
    if (spec.kernel_height, spec.kernel_width) != (3, 3) and \
            (spec.dilation_h, spec.dilation_w) != (1, 1):
        return (f"needs dilation 1 with a {spec.kernel_height}x{spec.kernel_width} kernel, got "
                f"{(spec.dilation_h, spec.dilation_w)}")
    # dilation > 1 runs on the dilation phases of the input (winograd.run_dilated), larger
    # kernels as 3x3 pieces (winograd.run_pieces)
    return None


#: Winograd: tiles per pipeline block, and the transformed-weight size above which
#: running stage by stage (each weight read once) beats blocks (measured, see below).
WINOGRAD_BLOCK_TILES = 196
WINOGRAD_STAGED_WEIGHT_BYTES = 16 << 20
#: What running stage by stage costs beyond its traffic, in bytes of traffic: two more
#: parallel launches, ~10 us each on 2 threads.
WINOGRAD_STAGE_LAUNCH_BYTES = 512 << 10


def winograd_block_rows(spec: ConvSpec, tile: int, threads: int) -> int:
    """Tile rows per pipeline block; all of them (N * tiles_h) means "run stage by stage".

    In a block a worker runs the whole pipeline, so the transform-domain data stays
    in its caches, but every block re-reads all P * C * K transformed weights. Blocks
    of ~196 tiles, at most one per worker, won wherever the weights are modest
    (2 threads, F(4x4): resnet_3x3_64_b8 4.5 ms against 5.6 ms stage by stage,
    resnet_3x3_128_b8 3.2 against 4.1, resnet_3x3_64_b1 0.58 against 0.80, 256
    channels even); with 512 channels (36 MiB of weights) reading them once wins
    (4.9 ms against 6.1 ms). Small images too run stage by stage when the blocks'
    extra reads of the weights outweigh the transform-domain data (V and M, P * T * (C
    + K) values) that stages write and read back: measured at batch 1 (2 threads,
    AVX-512, time / torch's), 256 -> 256 on 14x14 with F(4x4), two blocks of 8 tiles
    each reading 9 MiB: 1.18 in blocks, 0.60 by stages; googlenet's 160 -> 320 on 7x7
    with F(2x2): 1.10 against 0.61; densenet's 128 -> 32 on 14x14 (0.26 MiB): 0.83 in
    blocks against 0.95. More threads mean more blocks, each reading the weights again.
    """
    tiles_w = -(-spec.out_width // tile)
    rows = spec.batch * -(-spec.out_height // tile)
    alpha2 = (tile + 2) ** 2
    cg, kg = spec.in_channels_per_group, spec.out_channels_per_group
    weight_bytes = alpha2 * cg * kg * spec.itemsize
    if weight_bytes > WINOGRAD_STAGED_WEIGHT_BYTES:
        return rows
    block_rows = max(1, min(-(-rows // max(1, threads)), -(-WINOGRAD_BLOCK_TILES // tiles_w)))
    extra_weight_reads = (-(-rows // block_rows) - 1) * weight_bytes
    staged_bytes = 2 * alpha2 * rows * tiles_w * (cg + kg) * spec.itemsize
    if extra_weight_reads > staged_bytes + WINOGRAD_STAGE_LAUNCH_BYTES:
        return rows
    return block_rows


def _winograd_workspace(tile: int):
    def workspace(spec: ConvSpec) -> int:
        return _plain_winograd_workspace(winograd_plain_spec(spec), tile) \
            + winograd_input_copy_bytes(spec)
    return workspace


def _plain_winograd_workspace(spec: ConvSpec, tile: int) -> int:
    threads = config.CPU_COUNT
    alpha = tile + 2
    cols = -(-spec.out_width // tile) * tile + 2
    cg, kg = spec.in_channels_per_group, spec.out_channels_per_group
    tiles_w = -(-spec.out_width // tile)
    block_rows = winograd_block_rows(spec, tile, threads)
    staged = block_rows == spec.batch * -(-spec.out_height // tile)
    per_block = alpha * alpha * block_rows * tiles_w * (cg + kg)
    row_buffers = threads * alpha * cols * cg
    blocks = per_block if staged else threads * per_block
    weights = alpha * alpha * cg * spec.out_channels  # cached transformed weights
    return (row_buffers + blocks + weights) * spec.itemsize


WINOGRAD_KERNELS = {
    "blocks": "the whole pipeline (input transform, per-position matrix products, output "
              "transform) per block of tile rows, its data staying in the worker's caches",
    "stages": "stage by stage over all tiles, each transformed weight read once",
}


def winograd_phase_spec(spec: ConvSpec) -> ConvSpec:
    """The plain (dilation 1) convolution Winograd computes for a dilated ``spec``: every
    dilation phase of the padded input as one image of the batch (``winograd.run_dilated``);
    ``spec`` itself when it is not dilated."""
    dh, dw = spec.dilation_h, spec.dilation_w
    if dh == dw == 1:
        return spec
    return replace(spec, batch=dh * dw * spec.batch, in_height=-(-spec.padded_height // dh),
                   in_width=-(-spec.padded_width // dw), pad_top=0, pad_bottom=0, pad_left=0,
                   pad_right=0, dilation_h=1, dilation_w=1)


def winograd_pieces(spec: ConvSpec) -> tuple[int, int]:
    """(rows, columns) of 3x3 pieces a kernel of ``spec`` is cut into (zero-padded to whole
    pieces): (1, 1) for a 3x3 kernel, (2, 2) for a 5x5, (3, 3) for a 7x7."""
    return -(-spec.kernel_height // 3), -(-spec.kernel_width // 3)


def winograd_piece_spec(spec: ConvSpec) -> ConvSpec:
    """The 3x3 convolution Winograd computes for a larger kernel (``winograd.run_pieces``):
    output (oh, ow) = sum over the pieces (a, b) of the 3x3 piece's taps on the padded input
    shifted by (3a, 3b), i.e. one 3x3 convolution, unpadded, of an input whose channels are
    those shifted copies, (OH + 2) x (OW + 2) each, piece by piece within each group;
    ``spec`` itself for a 3x3 kernel."""
    rows, cols = winograd_pieces(spec)
    if rows * cols == 1:
        return spec
    return replace(spec, in_channels=spec.in_channels * rows * cols,
                   in_height=spec.out_height + 2, in_width=spec.out_width + 2, pad_top=0,
                   pad_bottom=0, pad_left=0, pad_right=0, kernel_height=3, kernel_width=3)


def winograd_plain_spec(spec: ConvSpec) -> ConvSpec:
    """The 3x3, dilation-1, zero-padded convolution the Winograd kernels run for ``spec``."""
    if spec.padding_mode != "zeros":
        spec = spec.with_padding_applied()
    return winograd_piece_spec(winograd_phase_spec(spec))


def winograd_input_copy_bytes(spec: ConvSpec) -> int:
    """The input copy Winograd makes before its kernels run: the dilation phases, or the
    shifted copies that make a larger kernel's 3x3 pieces (0 for a plain 3x3 layer)."""
    if spec.padding_mode != "zeros":
        spec = spec.with_padding_applied()
    plain = winograd_plain_spec(spec)
    if plain is spec:
        return 0
    return plain.batch * plain.in_channels * plain.in_height * plain.in_width * plain.itemsize


def _winograd_kernel(tile: int):
    def kernel(spec: ConvSpec) -> str:
        spec = winograd_plain_spec(spec)
        rows = winograd_block_rows(spec, tile, config.threads())
        return "stages" if rows == spec.batch * -(-spec.out_height // tile) else "blocks"
    return kernel


for _tile in (2, 4):
    register(Algorithm(
        name=f"winograd_f{_tile}x{_tile}", device="cpu",
        summary=f"Winograd F({_tile}x{_tile},3x3): transforms + per-position matrix products; "
                f"3x3 or larger kernels (as 3x3 pieces), stride 1 (dilated 3x3: per "
                f"dilation phase)",
        supports=_winograd_supports, workspace_bytes=_winograd_workspace(_tile),
        runner=f"cpu.winograd:run_f{_tile}", mixes_nonfinite=True,
        kernels=WINOGRAD_KERNELS, choose_kernel=_winograd_kernel(_tile),
    ))


# --------------------------------------------------------------------------- cuda
# Scratch in GPU memory; the host memory limit does not apply to it.


register(Algorithm(
    name="direct", device="cuda",
    summary="shared-memory tiled direct convolution, 8 output channels per thread; "
            "runs every spec",
    supports=lambda spec: None, workspace_bytes=padded_copy_bytes,  # the pad kernel's copy
    runner="cuda.direct:run",
))


def _cuda_winograd_supports(spec: ConvSpec):
    why_not = _winograd_supports(spec)
    if why_not is None and (spec.kernel_height, spec.kernel_width) != (3, 3):
        return f"needs a 3x3 kernel on the GPU, got {spec.kernel_height}x{spec.kernel_width}"
    if why_not is None and (spec.dilation_h, spec.dilation_w) != (1, 1):
        return f"needs dilation 1 on the GPU, got {(spec.dilation_h, spec.dilation_w)}"
    return why_not


def _cuda_winograd_workspace(tile: int):
    def workspace(spec: ConvSpec) -> int:
        positions = (tile + 2) ** 2
        tiles = spec.batch * -(-spec.out_height // tile) * -(-spec.out_width // tile)
        u = positions * spec.out_channels * spec.in_channels_per_group
        v_and_m = positions * (spec.in_channels + spec.out_channels) * tiles
        return (u + v_and_m) * spec.itemsize + padded_copy_bytes(spec)
    return workspace


for _tile in (2, 4):
    register(Algorithm(
        name=f"winograd_f{_tile}x{_tile}", device="cuda",
        summary=f"Winograd F({_tile}x{_tile},3x3): transform kernels + a batched tiled GEMM; "
                f"3x3, stride 1, dilation 1",
        supports=_cuda_winograd_supports, workspace_bytes=_cuda_winograd_workspace(_tile),
        runner=f"cuda.winograd:run_f{_tile}", mixes_nonfinite=True,
    ))
