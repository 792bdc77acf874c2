"""Matrix products on the GPU, tiled through shared memory: Winograd's per-position
products and ``linear``.

A block computes BLOCK_M x BLOCK_N outputs with 16 x 16 threads, each a 4 x 4 sub-tile
strided by 16 (so that stores coalesce), staging BLOCK_K-deep slices of both operands in
shared memory. ``b`` comes either as (batch, K, N) or, for ``linear``'s weight, as
stored, (batch, N, K) (:data:`MATMUL`'s key, a compile-time constant): each is staged
with its contiguous axis fastest, so the global reads coalesce both ways and no
transposed copy of the weight is made.
"""

from __future__ import annotations

from numba import cuda

from .runtime import kernel

BLOCK_M, BLOCK_N, BLOCK_K = 64, 64, 16
THREADS_SIDE = 16
PER_THREAD = BLOCK_M // THREADS_SIDE


def _matmul_source(b_transposed: bool):
    def factory(dtype):
        def batched_matmul(a, b, c, m_blocks, n_blocks):
            """c[i] = a[i] @ b[i] (or a[i] @ b[i].T): a (batch, M, K), c (batch, M, N)."""
            a_tile = cuda.shared.array((BLOCK_K, BLOCK_M), dtype)
            b_tile = cuda.shared.array((BLOCK_K, BLOCK_N), dtype)
            acc = cuda.local.array((PER_THREAD, PER_THREAD), dtype)
            a_reg = cuda.local.array(PER_THREAD, dtype)
            b_reg = cuda.local.array(PER_THREAD, dtype)
            rows, depth = a.shape[1], a.shape[2]
            cols = b.shape[1] if b_transposed else b.shape[2]
            rest, nb = divmod(cuda.blockIdx.x, n_blocks)
            item, mb = divmod(rest, m_blocks)
            m0, n0 = mb * BLOCK_M, nb * BLOCK_N
            tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
            tid = ty * THREADS_SIDE + tx
            zero = dtype(0)
            for i in range(PER_THREAD):
                for j in range(PER_THREAD):
                    acc[i, j] = 0
            for k0 in range(0, depth, BLOCK_K):
                for e in range(tid, BLOCK_M * BLOCK_K, THREADS_SIDE * THREADS_SIDE):
                    i, kk = divmod(e, BLOCK_K)  # kk fastest: a's rows are contiguous in k
                    value = zero
                    if m0 + i < rows and k0 + kk < depth:
                        value = a[item, m0 + i, k0 + kk]
                    a_tile[kk, i] = value
                for e in range(tid, BLOCK_K * BLOCK_N, THREADS_SIDE * THREADS_SIDE):
                    value = zero
                    if b_transposed:  # b (batch, N, K): k fastest
                        j, kk = divmod(e, BLOCK_K)
                        if k0 + kk < depth and n0 + j < cols:
                            value = b[item, n0 + j, k0 + kk]
                    else:  # b (batch, K, N): n fastest
                        kk, j = divmod(e, BLOCK_N)
                        if k0 + kk < depth and n0 + j < cols:
                            value = b[item, k0 + kk, n0 + j]
                    b_tile[kk, j] = value
                cuda.syncthreads()
                for kk in range(BLOCK_K):
                    for i in range(PER_THREAD):
                        a_reg[i] = a_tile[kk, ty + THREADS_SIDE * i]
                    for j in range(PER_THREAD):
                        b_reg[j] = b_tile[kk, tx + THREADS_SIDE * j]
                    for i in range(PER_THREAD):
                        for j in range(PER_THREAD):
                            acc[i, j] += a_reg[i] * b_reg[j]
                cuda.syncthreads()
            for i in range(PER_THREAD):
                row = m0 + ty + THREADS_SIDE * i
                for j in range(PER_THREAD):
                    col = n0 + tx + THREADS_SIDE * j
                    if row < rows and col < cols:
                        c[item, row, col] = acc[i, j]
        return batched_matmul

    factory.__name__ = "matmul_b_transposed" if b_transposed else "matmul"
    return factory


#: b_transposed -> kernel factory
MATMUL = {False: _matmul_source(False), True: _matmul_source(True)}


def launch_matmul(a, b, c, dtype: str, stream, b_transposed: bool = False):
    """c[i] = a[i] @ b[i] (``b_transposed``: a[i] @ b[i].T) for 3-D contiguous device
    arrays, on ``stream``."""
    m_blocks = -(-a.shape[1] // BLOCK_M)
    n_blocks = -(-c.shape[2] // BLOCK_N)
    blocks = a.shape[0] * m_blocks * n_blocks
    kernel(MATMUL[b_transposed], dtype)[blocks, (THREADS_SIDE, THREADS_SIDE), stream](
        a, b, c, m_blocks, n_blocks)


def ptx_signatures(dtype: str) -> list:
    """(kernel factory, signature) pairs for the PTX compile check."""
    a3 = f"{dtype}[:, :, ::1]"
    return [(source, f"void({a3}, {a3}, {a3}, int64, int64)") for source in MATMUL.values()]
