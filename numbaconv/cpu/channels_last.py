"""Convolution as register tiles over a channels-last copy of the input (an implicit GEMM).

For one kernel tap (r, s), the outputs of an output row are a matrix product: row
``ow`` of the input matrix is the pixel that tap reads, ``x[:, oh*sh + r*dh - pad_top,
ow*sw + s*dw - pad_left]``, and in a channels-last copy of the input (N, H, W, C) that
pixel's C channels are contiguous and consecutive outputs' pixels lie ``sw * C`` values
apart: the register tile (:mod:`.microkernel`) reads MR of them in place as the rows of
its ``a`` operand, broadcasting one channel at a time, against the tap's weights
(C, K) as ``b``, output channels along the vector lanes. Nothing is gathered per tap:
stride and dilation only move where the tile reads, and a tap whose input row is
padding is skipped for that output row, so a dilated layer whose reach is most of the
image (DeepLab's 3x3 at dilation 12 on 28 x 28) computes only the (position, tap)
pairs that read the input. Columns are padded with zeros in the copy instead, so
that every tile is a whole one (MR outputs by whole vectors of output channels).

The earlier way to skip padding taps (``gemm.tap_products``) gathered each tap's input
pixels into a buffer first; those gathers, rows of a dozen values a plane apart, ran at
memory latency and took as long as the products (AVX-512, 2 threads: 49 ms for
DeepLab's 2048 -> 256 dilation-12 layer, torch 23).

The layout of the buffers:

* ``xcl`` (N, H, Wp, C): the input, channels last, its columns shifted by ``pad_left``
  and zero outside the input; ``Wp`` covers every column any tile reads.
* ``panels`` (T, P, C, PW): the weights of tap t = r * kW + s, in P panels of PW
  output channels (the tile's NV vectors; the last panel zero past K).
* ``out_cl`` (N, OH, OWp, Kp): the products, OWp a multiple of MR and Kp of the vector
  width; transposed into the (N, K, OH, OW) output at the end, with bias and epilogue.
"""

import numpy as np

from ..isa import MR, NV, VECTOR_BYTES
from ..registry import channels_last_geometry, inside_range
from .dispatch import parallel_kernel, share
from .epilogue import finish_block, new_scratch
from .layout import new_output
from .microkernel import _tile, transpose_tile, transpose_tile_bias
from .weight_cache import TRANSFORMED_WEIGHTS
from .workspace import scratch

#: Input channels per pass: a pass's weights, (DEPTH_BLOCK x Kp) of one tap, stay in L2
#: while the job's outputs run over them.
DEPTH_BLOCK = 256


@parallel_kernel
def to_channels_last(x, pad_left, xcl, worker, workers):
    """xcl[n, h, pad_left + w, c] = x[n, c, h, w], zero in the other columns of xcl, one
    image row per job; LANES x LANES blocks transposed in registers."""
    n_batch, channels, height, width = x.shape
    padded_width = xcl.shape[2]
    lanes = VECTOR_BYTES // x.itemsize
    xf = x.reshape(x.size)
    xclf = xcl.reshape(xcl.size)
    zero = x.dtype.type(0)
    plane = height * width
    my_first, my_stop = share(worker, workers, n_batch * height)
    for job in range(my_first, my_stop):
        n = job // height
        h = job % height
        row = xcl[n, h]
        for w in range(pad_left):
            for c in range(channels):
                row[w, c] = zero
        for w in range(pad_left + width, padded_width):
            for c in range(channels):
                row[w, c] = zero
        src0 = n * channels * plane + h * width
        dst0 = (job * padded_width + pad_left) * channels
        c_full = channels - channels % lanes
        w_full = width - width % lanes
        for c0 in range(0, c_full, lanes):
            for w0 in range(0, w_full, lanes):
                transpose_tile(xf, src0 + c0 * plane + w0, plane,
                               xclf, dst0 + w0 * channels + c0, channels)
        for c in range(channels):  # the rest: scalar
            src = x[n, c, h]
            w_start = w_full if c < c_full else 0
            for w in range(w_start, width):
                row[pad_left + w, c] = src[w]
    return 0


@parallel_kernel
def tap_tiles(xcl, panels, out_cl, jobs, row_stride, tap_rows, tap_cols, col_lo, col_hi,
              stride_h, in_height, pad_top, worker, workers):
    """out_cl[n, oh, ow, :] = sum over taps reading inside the input of (the tap's input
    pixel) @ (the tap's weights): every tile MR outputs of one row by one panel.

    jobs (J, 3): image n, output rows [oh0, oh1). tap_rows[t] = r * dilation_h, tap_cols[t]
    = s * dilation_w: where tap t reads, relative to the output's own first pixel;
    [col_lo[t], col_hi[t]): the tiles' output columns (multiples of MR) that tap t covers.
    ``row_stride``: xcl values between the pixels of consecutive outputs (stride_w * C).
    """
    n_batch, height, padded_width, channels = xcl.shape
    n_taps, n_panels, _, panel = panels.shape
    out_rows, padded_out_width, padded_k = out_cl.shape[1], out_cl.shape[2], out_cl.shape[3]
    lanes = VECTOR_BYTES // xcl.itemsize
    xf = xcl.reshape(xcl.size)
    wf = panels.reshape(panels.size)
    of = out_cl.reshape(out_cl.size)
    zero = xcl.dtype.type(0)
    my_first, my_stop = share(worker, workers, jobs.shape[0])
    for job in range(my_first, my_stop):
        n, oh0, oh1 = jobs[job, 0], jobs[job, 1], jobs[job, 2]
        first = (n * out_rows + oh0) * padded_out_width * padded_k
        last = (n * out_rows + oh1) * padded_out_width * padded_k
        for i in range(first, last):
            of[i] = zero
        for c0 in range(0, channels, DEPTH_BLOCK):
            depth = min(DEPTH_BLOCK, channels - c0)
            for t in range(n_taps):
                lo, hi = col_lo[t], col_hi[t]
                if lo >= hi:
                    continue
                for oh in range(oh0, oh1):
                    ih = oh * stride_h + tap_rows[t] - pad_top
                    if ih < 0 or ih >= in_height:
                        continue  # this tap reads padding for the whole row
                    a_row = ((n * height + ih) * padded_width + tap_cols[t]) * channels + c0
                    c_row = ((n * out_rows + oh) * padded_out_width) * padded_k
                    for ow in range(lo, hi, MR):
                        a_off = a_row + ow * row_stride
                        c_off = c_row + ow * padded_k
                        for p in range(n_panels):
                            nv = min(NV, (padded_k - p * panel) // lanes)
                            _tile(nv, xf, a_off, row_stride, wf,
                                  ((t * n_panels + p) * channels + c0) * panel, panel,
                                  of, c_off + p * panel, padded_k, depth, True)
    return 0


@parallel_kernel
def from_channels_last(out_cl, bias, out, post, worker, workers):
    """out[n, k, oh, ow] = out_cl[n, oh, ow, k] + bias[k], then the epilogue ``post``; one
    (image, block of LANES output channels) per job, LANES x LANES blocks transposed in
    registers."""
    n_batch, out_channels, out_rows, out_width = out.shape
    padded_out_width, padded_k = out_cl.shape[2], out_cl.shape[3]
    lanes = VECTOR_BYTES // out.itemsize
    of = out_cl.reshape(out_cl.size)
    outf = out.reshape(out.size)
    plane = out_rows * out_width
    k_blocks = -(-out_channels // lanes)
    w_full = out_width - out_width % lanes
    if post is not None:  # (pruned, with every use, when post is None)
        scaled, bits = new_scratch(out.itemsize)
    my_first, my_stop = share(worker, workers, n_batch * k_blocks)
    for job in range(my_first, my_stop):
        n = job // k_blocks
        k0 = job % k_blocks * lanes
        k1 = min(out_channels, k0 + lanes)
        for oh in range(out_rows):
            src0 = (n * out_rows + oh) * padded_out_width * padded_k
            w_start = 0
            if k1 - k0 == lanes:
                for w0 in range(0, w_full, lanes):
                    transpose_tile_bias(of, src0 + w0 * padded_k + k0, padded_k, outf,
                                        (n * out_channels + k0) * plane + oh * out_width + w0,
                                        plane, bias, k0)
                w_start = w_full
            for k in range(k0, k1):
                dst = out[n, k, oh]
                b = bias[k]
                for w in range(w_start, out_width):
                    dst[w] = of[src0 + w * padded_k + k] + b
        if post is not None:
            for k in range(k0, k1):
                finish_block(out[n, k], 0, out_rows, 0, out_width, post, scaled, bits)
    return 0


def tap_columns(spec, padded_out_width):
    """(col_lo, col_hi) per tap: the output columns, rounded out to whole tiles, where its
    kernel column reads inside the input (empty when it never does)."""
    kw = spec.kernel_width
    taps = spec.kernel_height * kw
    lo = np.zeros(taps, np.int64)
    hi = np.zeros(taps, np.int64)
    for s in range(kw):
        first, end = inside_range(spec.out_width, spec.in_width, spec.pad_left,
                                  spec.stride_w, s * spec.dilation_w)
        if first < end:
            lo[s::kw] = first // MR * MR
            hi[s::kw] = min(padded_out_width, -(-end // MR) * MR)
    return lo, hi


def row_jobs(spec, threads):
    """(J, 3) jobs: (image, first output row, end row), about 4 per thread."""
    rows = spec.out_height
    per_image = max(1, min(rows, -(-4 * threads // spec.batch)))
    size = -(-rows // per_image)
    jobs = [(n, r, min(rows, r + size)) for n in range(spec.batch) for r in range(0, rows, size)]
    return np.array(jobs, np.int64).reshape(-1, 3)


def tap_panels(spec, weight, panel, n_panels):
    """The weights as (T, P, C, PW) panels (see the module's docstring), cached."""
    def compute():
        taps = spec.kernel_height * spec.kernel_width
        k, c = spec.out_channels, spec.in_channels
        by_tap = weight.transpose(2, 3, 1, 0).reshape(taps, c, k)
        padded = np.zeros((taps, c, n_panels * panel), weight.dtype)
        padded[:, :, :k] = by_tap
        return np.ascontiguousarray(
            padded.reshape(taps, c, n_panels, panel).transpose(0, 2, 1, 3))
    return TRANSFORMED_WEIGHTS.get("channels_last_panels", weight, compute)


def run(spec, x, weight, bias, post, threads):
    """The convolution ``spec`` (groups 1, zero padding) -> (N, K, OH, OW)."""
    padded_width, padded_out_width, padded_k, panel, n_panels = \
        channels_last_geometry(spec, x.itemsize)
    xcl = scratch("channels_last_input",
                  (spec.batch, spec.in_height, padded_width, spec.in_channels), x.dtype)
    to_channels_last(x, spec.pad_left, xcl, workers=spec.batch * spec.in_height)
    panels = tap_panels(spec, weight, panel, n_panels)
    out_cl = scratch("channels_last_output",
                     (spec.batch, spec.out_height, padded_out_width, padded_k), x.dtype)
    kw = spec.kernel_width
    taps = np.arange(spec.kernel_height * kw)
    col_lo, col_hi = tap_columns(spec, padded_out_width)
    jobs = row_jobs(spec, threads)
    tap_tiles(xcl, panels, out_cl, jobs, spec.stride_w * spec.in_channels,
              taps // kw * spec.dilation_h, taps % kw * spec.dilation_w, col_lo, col_hi,
              spec.stride_h, spec.in_height, spec.pad_top, workers=len(jobs))
    out = new_output(spec, x.dtype)
    from_channels_last(out_cl, bias, out, post,
                       workers=spec.batch * -(-spec.out_channels // (VECTOR_BYTES // x.itemsize)))
    return out
