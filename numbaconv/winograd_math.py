"""Winograd F(2x2,3x3) and F(4x4,3x3) transform matrices, shared by the CPU and GPU kernels.

Plain Python on purpose: the CPU kernels wrap the 1-D transforms with
``njit(inline="always")`` and the GPU kernels with ``cuda.jit(device=True)``, so both
compute the same straight-line expressions (see ``shared/winograd.md`` for the maths).
Points 0, +-1, +-2 of Lavin's wincnn construction; ``alpha = tile + 2``.
"""

import numpy as np

# G (alpha x 3): U = G g G^T for a 3x3 kernel g.
G_F2 = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
G_F4 = np.array([
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
])
G_MATRICES = {2: G_F2, 4: G_F4}


# B^T d and A^T m written out: fewer operations than a matrix loop, and straight-line
# code that vectorises (CPU) or stays in registers (GPU).


def bt2(d0, d1, d2, d3):
    return d0 - d2, d1 + d2, d2 - d1, d3 - d1


def at2(m0, m1, m2, m3):
    return m0 + m1 + m2, m1 - m2 + m3


def bt4(d0, d1, d2, d3, d4, d5):
    return (
        4 * d0 - 5 * d2 + d4,
        d3 + d4 - 4 * (d1 + d2),
        4 * (d1 - d2) + d4 - d3,
        2 * (d3 - d1) + d4 - d2,
        2 * (d1 - d3) + d4 - d2,
        4 * d1 - 5 * d3 + d5,
    )


def at4(m0, m1, m2, m3, m4, m5):
    s12, d12 = m1 + m2, m1 - m2
    s34, d34 = m3 + m4, m3 - m4
    return m0 + s12 + s34, d12 + 2 * d34, s12 + 4 * s34, d12 + 8 * d34 + m5
