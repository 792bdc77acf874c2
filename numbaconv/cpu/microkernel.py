"""Matrix products for the CPU kernels: a register-blocked GEMM written in LLVM IR through Numba.

Why not BLAS (``np.dot`` inside ``@njit``, which calls SciPy's OpenBLAS, as earlier
versions did): OpenBLAS picks its kernels per CPU when it loads, and an environment may
pin older ones: the reference machine sets ``OPENBLAS_CORETYPE=Haswell``, whose AVX2
kernels run at half the speed of its AVX-512 ones. Called from Numba's threads it also
had to have its own threads switched off around every kernel (they spin-wait and
oversubscribe the cores). This product is compiled by Numba for the CPU it runs on,
uses its widest vectors and runs on the calling thread. Measured on the reference
machine (2 threads, one product per thread, float32, 384x128 @ 128x128): 460 GFLOP/s,
against OpenBLAS's 240 (Haswell kernels, as pinned) and 435 (its AVX-512 kernels).

The structure is GotoBLAS's (and BLIS's): the output is cut into ``MR x NR`` tiles, each
kept in ``MR * NV`` vector registers while the depth loop runs; per depth step the tile
loads ``NV`` vectors of a row of ``b`` and broadcasts ``MR`` values of ``a``, one from
each of its MR rows, read in place (packing ``a`` first cost more than it saved when
``b`` is only one or two tiles wide, as in Winograd's 64-channel products). LLVM does
not build such register tiles from loops by itself (it keeps the
accumulators in memory, a load and a store per multiply-add), so the tile is written
directly as vector IR with ``numba.extending.intrinsic``: loads, ``llvm.fma`` and
stores on ``<W x float>`` values, which LLVM maps to one instruction each.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import JIT
from ..isa import MR, NV, VECTOR_BYTES  # the CPU's vector width and register tile
from .layout import copy2d


def vector_setup(context, builder, dtype):
    """(lanes, vector type, llvm.fma on it) for an intrinsic's code on ``dtype`` values:
    the widest vector this CPU has (``VECTOR_BYTES``)."""
    lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
    vec = ir.VectorType(context.get_value_type(dtype), lanes)
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{lanes}f{dtype.bitwidth}")
    return lanes, vec, fma


def _tile_kernel(mr, nv, gather=False):
    """An intrinsic computing c[0:mr, 0:nv*W] (+)= a[0:mr, 0:depth] @ b[0:depth, 0:nv*W].

    Arguments: ``a``, ``a_off``, ``lda``, ``b``, ``b_off``, ``ldb``, ``c``, ``c_off``,
    ``ldc``, ``depth``, ``accumulate``: for each matrix its array, the offset of its first
    element and its row stride, counted in elements from the start of the array's data
    (the caller guarantees every access is in bounds). With ``accumulate`` false the
    tile starts from zero instead of c's values.

    With ``gather``, ``ldb`` is instead an int64 array: row k of ``b`` starts at
    ``b_off + ldb[k]``. That is an implicit GEMM: the rows can be the input runs that
    each kernel tap reads, so a convolution needs no im2col copy (see
    ``direct.tiled_conv2d``).

    Where ``lda`` is an int64 array instead of a stride (the arguments' types decide, as
    each type compiles its own tile), row i of ``a`` starts at ``a_off + lda[i]``, each
    row anywhere (a weight gradient's rows: any MR of the input runs its kernel taps
    read, see ``weight_grad.tile_plan``).
    """

    @intrinsic
    def tile(typingctx, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, depth, accumulate):
        if not (a.dtype == b.dtype == c.dtype and a.dtype in (types.float32, types.float64)):
            return None  # a typing error: one float dtype for all three
        if gather != isinstance(ldb, types.Array):
            return None
        gather_rows = isinstance(lda, types.Array)
        sig = types.void(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, depth, accumulate)

        def codegen(context, builder, signature, args):
            (a_v, a_off_v, lda_v, b_v, b_off_v, ldb_v, c_v, c_off_v, ldc_v, depth_v,
             accumulate_v) = args
            dtype = signature.args[0].dtype
            align = dtype.bitwidth // 8
            width, vec, fma = vector_setup(context, builder, dtype)
            i64 = ir.IntType(64)

            def start(position, value, offset):
                array = cgutils.create_struct_proxy(signature.args[position])
                return builder.gep(array(context, builder, value=value).data, [offset])

            def vector_at(base, offset):
                return builder.bitcast(builder.gep(base, [offset]), vec.as_pointer())

            def row(base, stride, i):
                return builder.gep(base, [builder.mul(stride, ir.Constant(i64, i))])

            if gather_rows:
                row_starts = cgutils.create_struct_proxy(signature.args[2])(
                    context, builder, value=lda_v).data
                a_rows = [builder.gep(start(0, a_v, a_off_v), [builder.load(
                    builder.gep(row_starts, [ir.Constant(i64, i)]))]) for i in range(mr)]
            else:
                a_rows = [row(start(0, a_v, a_off_v), lda_v, i) for i in range(mr)]
            b_ptr = start(3, b_v, b_off_v)
            c_ptr = start(6, c_v, c_off_v)
            c_vectors = [[vector_at(row(c_ptr, ldc_v, i), ir.Constant(i64, v * width))
                          for v in range(nv)] for i in range(mr)]
            # Accumulators live in allocas, which LLVM promotes to registers.
            zero = ir.Constant(vec, None)
            keep = builder.icmp_unsigned("!=", accumulate_v, ir.Constant(accumulate_v.type, 0))
            accs = []
            for i in range(mr):
                accs.append([])
                for v in range(nv):
                    slot = cgutils.alloca_once(builder, vec)
                    initial = builder.load(c_vectors[i][v], align=align)
                    builder.store(builder.select(keep, initial, zero), slot)
                    accs[i].append(slot)
            undef = ir.Constant(vec, ir.Undefined)
            lane0 = ir.Constant(ir.IntType(32), 0)
            broadcast_mask = ir.Constant(ir.VectorType(ir.IntType(32), width), None)
            with cgutils.for_range(builder, depth_v) as loop:
                k = loop.index
                if gather:
                    offsets = cgutils.create_struct_proxy(signature.args[5])(
                        context, builder, value=ldb_v).data
                    b_row = builder.gep(b_ptr, [builder.load(builder.gep(offsets, [k]))])
                else:
                    b_row = builder.gep(b_ptr, [builder.mul(k, ldb_v)])
                b_vectors = [builder.load(vector_at(b_row, ir.Constant(i64, v * width)),
                                          align=align)
                             for v in range(nv)]
                for i in range(mr):
                    a_value = builder.load(builder.gep(a_rows[i], [k]))
                    a_splat = builder.shuffle_vector(
                        builder.insert_element(undef, a_value, lane0), undef, broadcast_mask)
                    for v in range(nv):
                        acc = builder.load(accs[i][v])
                        builder.store(builder.call(fma, [a_splat, b_vectors[v], acc]), accs[i][v])
            for i in range(mr):
                for v in range(nv):
                    builder.store(builder.load(accs[i][v]), c_vectors[i][v], align=align)
            return context.get_dummy_value()

        return sig, codegen

    return tile


def _panel_copy_kernel(nv):
    """An intrinsic copying ``nv`` vectors a row: dst[dst_off + k * ldd + v * W + q] =
    b[b_off + k * ldb + v * W + q] for k < depth (offsets and row strides in elements
    from the start of each array's data; the caller guarantees every access is in
    bounds): a block of ``b`` into a contiguous panel, one vector load and store each."""

    @intrinsic
    def copy(typingctx, b, b_off, ldb, dst, dst_off, ldd, depth):
        if not _same_float(b, dst):
            return None
        sig = types.void(b, b_off, ldb, dst, dst_off, ldd, depth)

        def codegen(context, builder, signature, args):
            b_v, b_off_v, ldb_v, dst_v, dst_off_v, ldd_v, depth_v = args
            dtype = signature.args[0].dtype
            align = dtype.bitwidth // 8
            width, vec, _ = vector_setup(context, builder, dtype)
            i64 = ir.IntType(64)

            def start(position, value, offset):
                array = cgutils.create_struct_proxy(signature.args[position])
                return builder.gep(array(context, builder, value=value).data, [offset])

            src_ptr, dst_ptr = start(0, b_v, b_off_v), start(3, dst_v, dst_off_v)
            with cgutils.for_range(builder, depth_v) as loop:
                k = loop.index
                src_row = builder.gep(src_ptr, [builder.mul(k, ldb_v)])
                dst_row = builder.gep(dst_ptr, [builder.mul(k, ldd_v)])
                for v in range(nv):
                    offset = ir.Constant(i64, v * width)
                    value = builder.load(builder.bitcast(builder.gep(src_row, [offset]),
                                                         vec.as_pointer()), align=align)
                    builder.store(value, builder.bitcast(builder.gep(dst_row, [offset]),
                                                         vec.as_pointer()), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return copy


def _transpose_codegen(add_bias):
    """Code for an intrinsic storing the transpose of a LANES x LANES block (LANES: 16 float32 or 8
    float64 values with AVX-512): dst[j, i] = src[i, j] (+ bias[j]) for i, j < LANES.

    Arguments: ``src``, ``src_off``, ``lds``, ``dst``, ``dst_off``, ``ldd`` (offsets and
    row strides count elements from the start of each array's data; the caller
    guarantees both blocks are in bounds), and with ``add_bias`` also ``bias`` and
    ``bias_off``; then it returns how many stored values are not finite. The block is
    loaded as LANES row vectors and transposed in registers by log2(LANES) rounds of
    interleaving (row i with row i + LANES/2, low halves then high halves: the perfect
    shuffle), one two-source permute instruction each, instead of LANES^2 scalar moves.
    """

    def codegen(context, builder, signature, args):
        src_v, src_off_v, lds_v, dst_v, dst_off_v, ldd_v = args[:6]
        dtype = signature.args[0].dtype
        align = dtype.bitwidth // 8
        lanes = VECTOR_BYTES // align
        vec = ir.VectorType(context.get_value_type(dtype), lanes)
        i64 = ir.IntType(64)

        def element(position, value, offset):
            array = cgutils.create_struct_proxy(signature.args[position])
            return builder.gep(array(context, builder, value=value).data, [offset])

        def row_vector(base, stride, i):
            row = builder.gep(base, [builder.mul(stride, ir.Constant(i64, i))])
            return builder.bitcast(row, vec.as_pointer())

        src_ptr = element(0, src_v, src_off_v)
        rows = [builder.load(row_vector(src_ptr, lds_v, i), align=align) for i in range(lanes)]
        half = lanes // 2
        index = ir.VectorType(ir.IntType(32), lanes)
        low = ir.Constant(index, [j // 2 + (j % 2) * lanes for j in range(lanes)])
        high = ir.Constant(index, [half + j // 2 + (j % 2) * lanes for j in range(lanes)])
        for _ in range(lanes.bit_length() - 1):
            shuffled = []
            for i in range(half):
                shuffled.append(builder.shuffle_vector(rows[i], rows[i + half], low))
                shuffled.append(builder.shuffle_vector(rows[i], rows[i + half], high))
            rows = shuffled
        dst_ptr = element(3, dst_v, dst_off_v)
        nonfinite = ir.Constant(i64, 0)
        if add_bias:
            bias_ptr = element(6, args[6], args[7])
            undef = ir.Constant(vec, ir.Undefined)
            lane0 = ir.Constant(ir.IntType(32), 0)
            splat = ir.Constant(index, None)
            popcount = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(lanes), [ir.IntType(lanes)]),
                f"llvm.ctpop.i{lanes}")
        for j in range(lanes):
            row = rows[j]
            if add_bias:
                b = builder.load(builder.gep(bias_ptr, [ir.Constant(i64, j)]))
                row = builder.fadd(row, builder.shuffle_vector(
                    builder.insert_element(undef, b, lane0), undef, splat))
                # x - x is NaN exactly where x is inf or NaN.
                diff = builder.fsub(row, row)
                bad = builder.bitcast(builder.fcmp_unordered("uno", diff, diff),
                                      ir.IntType(lanes))
                count = builder.zext(builder.call(popcount, [bad]), i64)
                nonfinite = builder.add(nonfinite, count)
            builder.store(row, row_vector(dst_ptr, ldd_v, j), align=align)
        return nonfinite if add_bias else context.get_dummy_value()

    return codegen


def _same_float(*arrays):
    dtype = arrays[0].dtype
    return dtype in (types.float32, types.float64) and all(a.dtype == dtype for a in arrays)


@intrinsic
def transpose_tile(typingctx, src, src_off, lds, dst, dst_off, ldd):
    """dst[j, i] = src[i, j] for i, j < LANES; see :func:`_transpose_codegen`."""
    if not _same_float(src, dst):
        return None
    return types.void(src, src_off, lds, dst, dst_off, ldd), _transpose_codegen(False)


@intrinsic
def transpose_tile_bias(typingctx, src, src_off, lds, dst, dst_off, ldd, bias, bias_off):
    """dst[j, i] = src[i, j] + bias[bias_off + j]; returns the count of non-finite values stored."""
    if not _same_float(src, dst, bias):
        return None
    sig = types.int64(src, src_off, lds, dst, dst_off, ldd, bias, bias_off)
    return sig, _transpose_codegen(True)


@njit(inline="always")
def transpose_block(src, src_off, lds, dst, dst_off, ldd, rows, cols):
    """dst[dst_off + j * ldd + i] = src[src_off + i * lds + j] for i < rows, j < cols
    (1-D arrays, offsets and strides in elements): whole LANES x LANES blocks by
    :func:`transpose_tile`, the ragged rows and columns past them one value at a time."""
    lanes = VECTOR_BYTES // src.itemsize
    whole_rows = rows // lanes * lanes
    whole_cols = cols // lanes * lanes
    for i in range(0, whole_rows, lanes):
        for j in range(0, whole_cols, lanes):
            transpose_tile(src, src_off + i * lds + j, lds, dst, dst_off + j * ldd + i, ldd)
    for j in range(cols):
        for i in range(whole_rows if j < whole_cols else 0, rows):
            dst[dst_off + j * ldd + i] = src[src_off + i * lds + j]


#: The implicit-GEMM tile: MR output channels by NV vectors of output positions; and one
#: of 4 channels, for layers whose channels per group come in fours (grouped layers with
#: 8, 16 or 32: in tiles of 6 a third, a ninth or a ninth of the work would be padding).
gather_tile = _tile_kernel(MR, NV, gather=True)
gather_tile4 = _tile_kernel(4, NV, gather=True)
_tile1 = _tile_kernel(MR, 1)
_tile2 = _tile_kernel(MR, 2)
_tile3 = _tile_kernel(MR, 3)
_tile4 = _tile_kernel(MR, 4)
_copy_panel = _panel_copy_kernel(NV)  # a whole panel's vectors
_copy_vector = _panel_copy_kernel(1)


@njit(inline="always")
def _tile(nv, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, depth, accumulate):
    if nv == 4:
        _tile4(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, depth, accumulate)
    elif nv == 3:
        _tile3(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, depth, accumulate)
    elif nv == 2:
        _tile2(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, depth, accumulate)
    else:
        _tile1(a, a_off, lda, b, b_off, ldb, c, c_off, ldc, depth, accumulate)


# Depth per pass: a pass re-reads (depth block x N) of b from L2 for every MR rows of a.
_DEPTH_BLOCK = 256
# Columns of b per pass, in bytes of a row (192 float32, 96 float64: whole panels with
# AVX2 and AVX-512): a (depth block x column block) of b, 192 KB, stays in L2 while
# every MR rows of a run over it. Without the cut, products wider than that streamed b
# from L3 once per MR rows: measured on AVX2, 2 threads' worth of single-thread
# products, GFLOP/s before/after: 192x1600 @ 1600x729 (AlexNet's 5x5 im2col) 49 -> 60,
# 64x576 @ 576x3136 35 -> 44, 512x2048 @ 2048x784 60 -> 67.
_COLUMN_BLOCK_BYTES = 768
# Rows of a from which each (depth block x column block) of b is first copied into
# panels, one register tile wide, each contiguous: read from b a whole row at a time,
# the block streams in from memory (a tile's own reads, one vector or two per row of b,
# a row apart, outrun the hardware prefetchers: a few rows per 4 KiB page), and the
# tiles then read it sequentially. Measured (AVX2, one thread, products each on b fresh
# from memory, as Winograd's per-position ones are), GFLOP/s in place/packed: 36 x
# (48x256 @ 256x192) 37 -> 53, 36 x (192x256 @ 256x192) 49-60 -> 69-73, 36 x (96x512 @
# 512x512) 37 -> 45; 2 threads, pointwise jobs (512x2048 @ 2048x112) 73 -> 103, AlexNet's
# 5x5 im2col jobs (192x1600 @ 1600x96) 72 -> 115. With fewer rows of a the copy costs
# more than it saves (a strided 3x3's im2col jobs of 36 rows of weights: 1.02 -> 1.26-1.66
# of torch's time).
_PACK_MIN_ROWS = 8 * MR

# Called from the cached kernels, whose cache entries hold the compiled callees too; a
# cache of their own would only add files that, when corrupt, break the callers' recovery
# (:mod:`.dispatch` recompiles the kernel it launched, not its callees).
CALLEE = dict(JIT, cache=False)


@njit(**CALLEE)
def workspace_size(depth):
    """Elements of the ``work`` buffer :func:`matmul` needs for ``a`` with ``depth`` columns."""
    kc = min(depth, _DEPTH_BLOCK)
    width = VECTOR_BYTES // 4  # float32 lanes: enough for float64 too
    packed = kc * (_COLUMN_BLOCK_BYTES // 4)  # float32 columns: enough for float64 too
    return MR * kc + MR * NV * width + kc * width + packed


@njit(inline="always")
def _pack_panels(b, k0, kc, jb, j_end, packed, panel, width):
    """packed[p * kc * panel + k * panel + q] = b[k0 + k, jb + p * panel + q] for the
    columns [jb, j_end), zero past j_end up to a whole vector (see _PACK_MIN_ROWS):
    whole vectors by the copy intrinsics, a last partial one by a loop."""
    ldb = b.strides[0] // b.itemsize
    j = jb
    while j + width <= j_end:
        rel = j - jb
        dst = (rel - rel % panel) * kc + rel % panel  # panel rel // panel, its column
        if rel % panel == 0 and j + panel <= j_end:
            _copy_panel(b, k0 * ldb + j, ldb, packed, dst, panel, kc)
            j += panel
        else:
            _copy_vector(b, k0 * ldb + j, ldb, packed, dst, panel, kc)
            j += width
    if j < j_end:  # a last partial vector, zero-padded
        rel = j - jb
        dst = (rel - rel % panel) * kc + rel % panel
        for k in range(kc):
            row = b[k0 + k]
            for q in range(width):
                packed[dst + k * panel + q] = row[j + q] if j + q < j_end else 0


@njit(inline="always")
def _pack_panels_transposed(bt, k0, kc, jb, j_end, packed, panel, width):
    """As :func:`_pack_panels` for b = bt.T, given as bt (N, K): column j of b is row j of
    bt, contiguous along the depth. Whole blocks of ``width`` columns by ``width`` depth
    steps are transposed in registers (``transpose_tile``), the depth's remainder and a
    last partial vector of columns (zero-padded) by loops."""
    ldt = bt.strides[0] // bt.itemsize
    whole_depth = kc // width * width
    for j in range(jb, j_end, width):
        rel = j - jb
        dst = (rel - rel % panel) * kc + rel % panel  # panel rel // panel, its column
        if j + width <= j_end:
            for k in range(0, whole_depth, width):
                transpose_tile(bt, j * ldt + k0 + k, ldt, packed, dst + k * panel, panel)
            for k in range(whole_depth, kc):
                for q in range(width):
                    packed[dst + k * panel + q] = bt[j + q, k0 + k]
        else:
            for k in range(kc):
                for q in range(width):
                    packed[dst + k * panel + q] = bt[j + q, k0 + k] if j + q < j_end else 0


def _matmul_kernel(b_transposed):
    """The register-tiled product, ``c (+)= a @ b``, with ``b`` given as it is
    (``b_transposed`` false: :func:`matmul`) or as ``b.T`` (:func:`matmul_bt`, whose
    blocks of b are transposed as they are packed). ``b_transposed`` is a constant of
    the compiled function: Numba prunes the other branch."""

    @njit(**CALLEE)
    def product(a, b, c, work, accumulate=False):
        m, depth = a.shape
        n = b.shape[0] if b_transposed else b.shape[1]
        b_depth = b.shape[1] if b_transposed else b.shape[0]
        if b_depth != depth or c.shape[0] != m or c.shape[1] != n:
            raise ValueError("matmul: shapes do not match")
        if m == 0 or n == 0:
            return
        if depth == 0:
            if not accumulate:
                c[:, :] = 0
            return
        item = a.itemsize
        if a.strides[1] != item or b.strides[1] != item or c.strides[1] != item:
            raise ValueError("matmul: rows must be contiguous")
        width = VECTOR_BYTES // item
        panel = NV * width
        kc_max = min(depth, _DEPTH_BLOCK)
        column_block = _COLUMN_BLOCK_BYTES // item  # a multiple of every panel width
        edges = MR * kc_max + MR * panel + kc_max * width
        if work.size < edges + kc_max * column_block:
            raise ValueError("matmul: work buffer too small")
        a_edge = work[:MR * kc_max].reshape(MR, kc_max)
        c_edge = work[MR * kc_max:MR * (kc_max + panel)].reshape(MR, panel)
        b_edge = work[MR * (kc_max + panel):edges].reshape(kc_max, width)
        packed = work[edges:edges + kc_max * column_block]
        packed_2d = packed.reshape(kc_max, column_block)  # for the tiles (b's 2-D type)
        pack = b_transposed or m >= _PACK_MIN_ROWS
        lda = a.strides[0] // item
        ldb = b.strides[0] // item
        ldc = c.strides[0] // item
        vector_cols = n // width * width
        tail = n - vector_cols
        for k0 in range(0, depth, kc_max):
            kc = min(kc_max, depth - k0)
            onto_c = accumulate or k0 > 0
            if tail and not pack:
                b_edge[:, :] = 0
                copy2d(b_edge[:kc, :tail], b[k0:k0 + kc, vector_cols:])
            for jb in range(0, n, column_block):
                j_end = min(n, jb + column_block)
                if b_transposed:
                    _pack_panels_transposed(b, k0, kc, jb, j_end, packed, panel, width)
                elif pack:
                    _pack_panels(b, k0, kc, jb, j_end, packed, panel, width)
                for i0 in range(0, m, MR):
                    rows = min(MR, m - i0)
                    if rows == MR:
                        a_src, a_off, a_ld = a, i0 * lda + k0, lda
                    else:  # the last rows, fewer than MR
                        a_edge[:, :] = 0
                        copy2d(a_edge[:rows, :kc], a[i0:, k0:k0 + kc])
                        a_src, a_off, a_ld = a_edge, 0, kc_max
                    j0 = jb
                    while j0 < j_end:
                        if pack:  # whole vectors of a panel, zero-padded past n
                            cols = min(panel, j_end - j0)
                            nv = -(-cols // width)
                            b_src, b_off, b_ld = packed_2d, (j0 - jb) * kc, panel
                        elif j0 < vector_cols:
                            nv = min(NV, (min(vector_cols, j_end) - j0) // width)
                            cols = nv * width
                            b_src, b_off, b_ld = b, k0 * ldb + j0, ldb
                        else:
                            nv, cols = 1, tail
                            b_src, b_off, b_ld = b_edge, 0, width
                        # One call site: each one inlines the register tiles (compile time).
                        edge = rows < MR or cols < nv * width
                        if edge:  # through a padded copy of c
                            copy2d(c_edge[:rows, :cols], c[i0:i0 + rows, j0:j0 + cols])
                            c_dst, c_off, c_ld = c_edge, 0, panel
                        else:
                            c_dst, c_off, c_ld = c, i0 * ldc + j0, ldc
                        _tile(nv, a_src, a_off, a_ld, b_src, b_off, b_ld, c_dst, c_off, c_ld,
                              kc, onto_c)
                        if edge:
                            copy2d(c[i0:i0 + rows, j0:j0 + cols], c_edge[:rows, :cols])
                        j0 += cols

    return product


matmul = _matmul_kernel(False)
matmul.__doc__ = """c[:, :] = a @ b (``accumulate``: c += a @ b), single-threaded, for 2-D float
arrays of one dtype.

a (M, K), b (K, N), c (M, N): any row strides, but each row contiguous. ``work``: a 1-D
array of a's dtype with at least ``workspace_size(K)`` elements, so that callers running
many products reuse one buffer: it holds zero-padded copies of the edges (the last rows
of ``a`` and ``c`` when M is not a multiple of MR, the last columns of ``b`` and ``c``
when N is not one of the vector width), which then run through the same register
tiles, and, for products of at least ``_PACK_MIN_ROWS`` rows, each block of ``b``
copied into contiguous panels.
"""
matmul_bt = _matmul_kernel(True)
matmul_bt.__doc__ = """c[:, :] = a @ bt.T (``accumulate``: c += a @ bt.T): :func:`matmul` with its
second operand given transposed, bt (N, K), rows contiguous along the depth as a's are
(a weight gradient's two sides: the output gradient's and the input's rows over the
positions). Every block of b is packed, transposed in registers on the way, so no
transposed copy of bt is ever made."""
