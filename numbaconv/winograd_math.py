"""Winograd F(2x2,3x3) and F(4x4,3x3) transform matrices, shared by the CPU and GPU kernels.

Plain Python on purpose: the CPU kernels inline the 1-D transforms below (``bt4`` is
``BT_F4 @ d`` written out) with ``njit(inline="always")``, the GPU kernels multiply by
the matrices, and a test checks that the two agree (see ``shared/winograd.md`` for the
maths).
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

# B^T (alpha x alpha): V = B^T d B for an alpha x alpha input tile d.
BT_F2 = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])
BT_F4 = np.array([
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
])
# A^T (tile x alpha): y = A^T m A for the alpha x alpha products m.
AT_F2 = np.array([[1, 1, 1, 0], [0, 1, -1, 1]])
AT_F4 = np.array([
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
])
BT_MATRICES = {2: BT_F2, 4: BT_F4}
AT_MATRICES = {2: AT_F2, 4: AT_F4}


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
