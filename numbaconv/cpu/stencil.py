"""The 3x3 stencil of depthwise convolution as vector IR: three loads per output vector.

A depthwise 3x3 output needs nine inputs, three from each of three rows, at columns
j, j + 1 and j + 2. Written as a loop over j, LLVM loads each of the nine as its own
unaligned vector: nine loads per vector of outputs, most of them crossing a cache line,
which made the load ports, not the multiply-adds, the limit. Here each input row is
loaded once per vector: the vector at j + W (W lanes) is loaded, the one at j was
loaded by the previous step, and the taps at j + 1 and j + 2 are cut from the pair by
two shuffles (one ``valignd`` each with AVX-512). Written with
``numba.extending.intrinsic``, as :mod:`.microkernel` does for the matrix product.

Also here: ``channel_taps1``/``channel_taps4``, depthwise outputs computed one vector of
channels at a time from channels-last data (any kernel), for small images.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .microkernel import vector_setup

#: How far ahead of the row being read the loop asks for input (``llvm.prefetch``): the
#: hardware prefetcher alone left the loop waiting on memory when the input is not in the
#: cache (measured on the depthwise bench layer after a torch call had evicted it: 0.58 ms
#: without, 0.35-0.40 ms with 4-8 KiB; 2 KiB and 32 KiB helped less).
PREFETCH_BYTES = 6144


@intrinsic
def stencil3x3_span(typingctx, x, x_off, width, w, bias, out, out_off, column, edges,
                    n_vectors):
    """One span of a 3x3 stencil over rows of ``width``:
    out[out_off + j] = bias + sum over r, s < 3 of w[r, s] * x[x_off + r * width + j + s],
    for j < n_vectors * L (L: lanes per vector). With ``edges`` true the rows are taken
    as zero-padded by 1 left and right: the tap s = 0 of an output in column 0 and the
    tap s = 2 of one in column ``width - 1`` count as zero, instead of the neighbouring
    row's element the formula reaches (the rows of an unpadded plane, see
    ``direct._depthwise3x3_flat_rows``); with ``edges`` false every tap counts (rows
    already padded, see ``direct.depthwise3x3_stacked``).

    ``x`` and ``out``: arrays of one float dtype, addressed by flat offsets from the start
    of their data, with rows ``width`` apart (``width`` >= L when ``edges``);
    ``column``: the column of output ``out_off``; ``w``: a C-contiguous (3, 3) array of
    the same dtype; ``bias`` a scalar. Reads x[x_off + r * width + k] for k <
    (n_vectors + 1) * L: the caller keeps that inside the array (one vector past the
    last output's taps).
    """
    if not (x.dtype == w.dtype == out.dtype and x.dtype in (types.float32, types.float64)):
        return None
    sig = types.void(x, x_off, width, w, bias, out, out_off, column, edges, n_vectors)

    def codegen(context, builder, signature, args):
        x_v, x_off_v, width_v, w_v, bias_v, out_v, out_off_v, column_v, edges_v, n_v = args
        dtype = signature.args[0].dtype
        align = dtype.bitwidth // 8
        lanes, vec, fma = vector_setup(context, builder, dtype)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        columns_type = ir.VectorType(i32, lanes)
        byte_pointer = ir.IntType(8).as_pointer()
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0")

        def data(position, value):
            return cgutils.create_struct_proxy(signature.args[position])(
                context, builder, value=value).data

        def splat(value, vector_type):
            undef = ir.Constant(vector_type, ir.Undefined)
            one = builder.insert_element(undef, value, ir.Constant(i32, 0))
            return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(i32, lanes), None))

        def load_vector(pointer, offset):
            address = builder.bitcast(builder.gep(pointer, [offset]), vec.as_pointer())
            return builder.load(address, align=align)

        w_ptr = data(3, w_v)
        taps = [splat(builder.load(builder.gep(w_ptr, [ir.Constant(i64, k)])), vec)
                for k in range(9)]
        bias_splat = splat(context.cast(builder, bias_v, signature.args[4], dtype), vec)
        zero = ir.Constant(vec, None)
        x_ptr = builder.gep(data(0, x_v), [x_off_v])
        rows = [builder.gep(x_ptr, [builder.mul(width_v, ir.Constant(i64, r))]) for r in range(3)]
        out_ptr = builder.gep(data(5, out_v), [out_off_v])
        shift = [ir.Constant(ir.VectorType(i32, lanes), [s + k for k in range(lanes)])
                 for s in (1, 2)]
        # The column of each lane, kept in [0, width) by one subtraction per step (a
        # step moves L <= width columns on).
        width_splat = splat(builder.trunc(width_v, i32), columns_type)
        last_splat = builder.sub(width_splat, splat(ir.Constant(i32, 1), columns_type))
        step_splat = splat(ir.Constant(i32, lanes), columns_type)

        def wrapped(columns):
            beyond = builder.icmp_signed(">=", columns, width_splat)
            return builder.select(beyond, builder.sub(columns, width_splat), columns)

        first_columns = wrapped(builder.add(
            ir.Constant(columns_type, list(range(lanes))),
            splat(builder.trunc(column_v, i32), columns_type)))
        columns_slot = cgutils.alloca_once_value(builder, first_columns)
        edges_on = builder.icmp_unsigned("!=", edges_v, ir.Constant(edges_v.type, 0))
        edges_mask = splat(edges_on, ir.VectorType(ir.IntType(1), lanes))
        # Each row's vector at the current j, carried from one step to the next (allocas
        # that LLVM promotes to registers).
        current = [cgutils.alloca_once_value(builder, load_vector(row, ir.Constant(i64, 0)))
                   for row in rows]
        prefetch_distance = ir.Constant(i64, PREFETCH_BYTES // align)
        with cgutils.for_range(builder, n_v) as loop:
            j = builder.mul(loop.index, ir.Constant(i64, lanes))
            following = builder.add(j, ir.Constant(i64, lanes))
            columns = builder.load(columns_slot)
            builder.store(wrapped(builder.add(columns, step_splat)), columns_slot)
            in_first = builder.and_(
                builder.icmp_signed("==", columns, ir.Constant(columns_type, None)), edges_mask)
            in_last = builder.and_(builder.icmp_signed("==", columns, last_splat), edges_mask)
            partial = []
            for r, row in enumerate(rows):
                here = builder.load(current[r])
                ahead = load_vector(row, following)
                builder.store(ahead, current[r])
                left = builder.select(in_first, zero, here)
                middle = builder.shuffle_vector(here, ahead, shift[0])
                right = builder.select(in_last, zero,
                                       builder.shuffle_vector(here, ahead, shift[1]))
                # One chain per kernel row, summed at the end: shorter dependency chains.
                if r == 0:
                    total = builder.call(fma, [taps[0], left, bias_splat])
                else:
                    total = builder.fmul(taps[3 * r], left)
                total = builder.call(fma, [taps[3 * r + 1], middle, total])
                total = builder.call(fma, [taps[3 * r + 2], right, total])
                partial.append(total)
            # (read, keep in all cache levels, data): the last row is the one first read here
            ahead = builder.gep(rows[2], [builder.add(j, prefetch_distance)])
            builder.call(prefetch, [builder.bitcast(ahead, byte_pointer), ir.Constant(i32, 0),
                                    ir.Constant(i32, 3), ir.Constant(i32, 1)])
            result = builder.fadd(builder.fadd(partial[0], partial[1]), partial[2])
            address = builder.bitcast(builder.gep(out_ptr, [j]), vec.as_pointer())
            builder.store(result, address, align=align)
        return context.get_dummy_value()

    return sig, codegen


def _channel_taps(outputs):
    """An intrinsic for ``outputs`` depthwise outputs of L channels at once, channels last:
    dst[dst_off + i * L + l] = bias[l] + sum over t of
    taps[t, l] * src[src_off + i * step + offsets[t] + l], for i < outputs and l < L
    (one vector each; see ``direct.depthwise_channels_last``).

    ``src``, ``taps`` (n_taps, L), ``bias`` (L,) and ``dst``: C-contiguous arrays of one
    float dtype; ``offsets``: int64 (n_taps,); ``src_off``, ``step``, ``dst_off`` and the
    offsets count elements from the start of each array's data. Several outputs per call
    keep several multiply-add chains in flight: one output's nine taps are one chain,
    whose latency, not the arithmetic, set the pace.
    """

    @intrinsic
    def channel_taps(typingctx, src, src_off, step, offsets, taps, bias, dst, dst_off):
        if not (src.dtype == taps.dtype == bias.dtype == dst.dtype
                and src.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(src, src_off, step, offsets, taps, bias, dst, dst_off)

        def codegen(context, builder, signature, args):
            src_v, src_off_v, step_v, offsets_v, taps_v, bias_v, dst_v, dst_off_v = args
            dtype = signature.args[0].dtype
            align = dtype.bitwidth // 8
            lanes, vec, fma = vector_setup(context, builder, dtype)
            i64 = ir.IntType(64)

            def proxy(position, value):
                return cgutils.create_struct_proxy(signature.args[position])(
                    context, builder, value=value)

            def load_vector(pointer):
                return builder.load(builder.bitcast(pointer, vec.as_pointer()), align=align)

            offsets = proxy(3, offsets_v)
            n_taps = builder.extract_value(offsets.shape, 0)
            src_ptr = builder.gep(proxy(0, src_v).data, [src_off_v])
            starts = [builder.gep(src_ptr, [builder.mul(step_v, ir.Constant(i64, i))])
                      for i in range(outputs)]
            taps_ptr = proxy(4, taps_v).data
            bias_vector = load_vector(proxy(5, bias_v).data)
            totals = [cgutils.alloca_once_value(builder, bias_vector) for _ in range(outputs)]
            with cgutils.for_range(builder, n_taps) as loop:
                t = loop.index
                offset = builder.load(builder.gep(offsets.data, [t]))
                tap = load_vector(builder.gep(taps_ptr, [builder.mul(t, ir.Constant(i64, lanes))]))
                for start, total in zip(starts, totals):
                    value = load_vector(builder.gep(start, [offset]))
                    builder.store(builder.call(fma, [tap, value, builder.load(total)]), total)
            out_ptr = builder.gep(proxy(6, dst_v).data, [dst_off_v])
            for i, total in enumerate(totals):
                address = builder.gep(out_ptr, [ir.Constant(i64, i * lanes)])
                builder.store(builder.load(total), builder.bitcast(address, vec.as_pointer()),
                              align=align)
            return context.get_dummy_value()

        return sig, codegen

    return channel_taps


channel_taps4 = _channel_taps(4)
channel_taps1 = _channel_taps(1)
