"""Sums of a few outer products on the CPU: the gradients of 1x1 layers on 1x1 images.

A squeeze-and-excitation layer's weight gradient, grad_output^T (K, N) @ input (N, C),
and its input gradient, grad_output (N, K) @ weight (K, C), are products only N (the
batch) or K deep into outputs of N or K rows: as sums of rows, ``out[m] += a[j, m] *
b[j]``, every output row is written once per term from rows already in cache, with no
packing or transposes. NumPy's matmul ran them as fast alone, but its BLAS threads and
Numba's (or torch's) then took turns on the cores: 0.2 ms calls took 8 ms in the
backward bench, between torch's calls.
"""

import numpy as np

from .dispatch import parallel_kernel, share

#: Output columns per job: a block of every output row stays in L2 while the terms add.
COLUMN_BLOCK = 256


@parallel_kernel
def outer_sums(a, b, out, worker, workers):
    """out[m, :] = sum over j of a[j, m] * b[j, :]: a (J, M), b (J, C), out (M, C), all
    C-contiguous; a block of COLUMN_BLOCK columns per job, four terms per pass over an
    output row (one pass per term, or a view per row and term, cost 3x as much: 256 rows
    of 2048 by 8 terms, 0.6-0.7 ms). Flat unsigned indices, which LLVM vectorises."""
    terms, rows = a.shape
    columns = b.shape[1]
    bf = b.reshape(b.size)
    of = out.reshape(out.size)
    zero = out.dtype.type(0)
    my_first, my_stop = share(worker, workers, -(-columns // COLUMN_BLOCK))
    for job in range(my_first, my_stop):
        c0 = job * COLUMN_BLOCK
        width = np.uint64(min(columns, c0 + COLUMN_BLOCK) - c0)
        for m in range(rows):
            start = np.uint64(m * columns + c0)
            for c in range(width):
                of[start + c] = zero
            for j in range(0, terms - 3, 4):
                f0, f1, f2, f3 = a[j, m], a[j + 1, m], a[j + 2, m], a[j + 3, m]
                s0 = np.uint64(j * columns + c0)
                s1 = s0 + np.uint64(columns)
                s2 = s1 + np.uint64(columns)
                s3 = s2 + np.uint64(columns)
                for c in range(width):
                    of[start + c] += (f0 * bf[s0 + c] + f1 * bf[s1 + c]
                                      + f2 * bf[s2 + c] + f3 * bf[s3 + c])
            for j in range(terms - terms % 4, terms):
                factor = a[j, m]
                source = np.uint64(j * columns + c0)
                for c in range(width):
                    of[start + c] += factor * bf[source + c]
    return 0
