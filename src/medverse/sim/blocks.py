"""The warped stiffness assembled once per step as 3x3 node blocks, and its products.

Matrix-free, every CG iteration re-derived each tetrahedron's warped stiffness from its rotation
(four 3x3 matrix products and four scattered adds per element per iteration). Assembled once
per step instead (the rotations are fixed within a step), a product is one pass over the node
rows (about 14 blocks a row on a tet mesh; no scatter, so no atomics and the same sum order on
CPU and CUDA): at 5k nodes one product costs about a quarter of a matrix-free one, and the
assembly about two of them.

Block K_ba (force on node b per displacement of node a) of one tetrahedron with rotation R,
rest gradients g_a of its shape functions (g_1..g_3 the rows of Dm^-1, g_0 minus their sum) and
h_a = R g_a: K_ba = V (mu (g_a . g_b) I + mu h_a h_b^T + lam h_b h_a^T), the warped stiffness
R K0 R^T of co-rotational linear elasticity, positive semi-definite by construction.
"""

# Warp's kernel language uses array constructors as annotations; mypy cannot check this DSL.
# mypy: ignore-errors

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import warp as wp

# No gradients are taken through these kernels: no adjoint code to compile; -O3 for the CPU.
wp.set_module_options({"enable_backward": False, "optimization_level": 3})


@dataclass(frozen=True)
class BlockPattern:
    """Where each tetrahedron's 16 node-pair blocks go in a block-row (CSR) matrix.

    Attributes:
        row_start: (n + 1,) first block of each node row.
        columns: (nnz,) node column of each block, sorted within each row.
        block_of: (m, 16) block index of the pair (b, a) at ``4 * b + a`` for each tetrahedron.
    """

    row_start: np.ndarray
    columns: np.ndarray
    block_of: np.ndarray


def block_pattern(tets: np.ndarray, n_nodes: int) -> BlockPattern:
    """The block sparsity of the stiffness of ``tets`` over ``n_nodes`` nodes."""
    rows = np.repeat(tets, 4, axis=1).astype(np.int64)  # b, b, b, b for each a
    cols = np.tile(tets, (1, 4)).astype(np.int64)  # a for each b
    keys, inverse = np.unique(rows * n_nodes + cols, return_inverse=True)
    counts = np.bincount(keys // n_nodes, minlength=n_nodes)
    row_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    columns = (keys % n_nodes).astype(np.int32)
    block_of = inverse.reshape(len(tets), 16).astype(np.int32)
    return BlockPattern(row_start, columns, block_of)


@wp.func
def pair_block(
    ga: wp.vec3d, gb: wp.vec3d, ha: wp.vec3d, hb: wp.vec3d, vmu: wp.float64, vlam: wp.float64
) -> wp.mat33d:
    """K_ba = V (mu (g_a . g_b) I + mu h_a h_b^T + lam h_b h_a^T) (``vmu`` = V mu, ...)."""
    d = vmu * wp.dot(ga, gb)
    return wp.mat33d(
        d + vmu * ha[0] * hb[0] + vlam * hb[0] * ha[0],
        vmu * ha[0] * hb[1] + vlam * hb[0] * ha[1],
        vmu * ha[0] * hb[2] + vlam * hb[0] * ha[2],
        vmu * ha[1] * hb[0] + vlam * hb[1] * ha[0],
        d + vmu * ha[1] * hb[1] + vlam * hb[1] * ha[1],
        vmu * ha[1] * hb[2] + vlam * hb[1] * ha[2],
        vmu * ha[2] * hb[0] + vlam * hb[2] * ha[0],
        vmu * ha[2] * hb[1] + vlam * hb[2] * ha[1],
        d + vmu * ha[2] * hb[2] + vlam * hb[2] * ha[2],
    )


@wp.func
def add_pair(
    blocks: wp.array(dtype=wp.mat33d),
    block_of: wp.array2d(dtype=wp.int32),
    t: int,
    a: int,
    b: int,
    k: wp.mat33d,
):
    """Add K_ba at (b, a) and, off the diagonal, its transpose K_ab at (a, b)."""
    wp.atomic_add(blocks, block_of[t, 4 * b + a], k)
    if a != b:
        wp.atomic_add(blocks, block_of[t, 4 * a + b], wp.transpose(k))


@wp.func
def add_tet_blocks(
    blocks: wp.array(dtype=wp.mat33d),
    block_of: wp.array2d(dtype=wp.int32),
    t: int,
    dmi: wp.mat33d,
    r: wp.mat33d,
    vmu: wp.float64,
    vlam: wp.float64,
):
    """Add tetrahedron ``t``'s 16 warped-stiffness blocks (rotation ``r``, V mu, V lam).

    K is symmetric (K_ab = K_ba^T), so the 10 blocks with a >= b are computed. Elements that
    share an edge add to the same block: atomic on CUDA, a plain add on the CPU (one thread).
    """
    g1 = wp.vec3d(dmi[0, 0], dmi[0, 1], dmi[0, 2])
    g2 = wp.vec3d(dmi[1, 0], dmi[1, 1], dmi[1, 2])
    g3 = wp.vec3d(dmi[2, 0], dmi[2, 1], dmi[2, 2])
    g0 = -(g1 + g2 + g3)
    h0 = r * g0
    h1 = r * g1
    h2 = r * g2
    h3 = r * g3
    add_pair(blocks, block_of, t, 0, 0, pair_block(g0, g0, h0, h0, vmu, vlam))
    add_pair(blocks, block_of, t, 1, 0, pair_block(g1, g0, h1, h0, vmu, vlam))
    add_pair(blocks, block_of, t, 2, 0, pair_block(g2, g0, h2, h0, vmu, vlam))
    add_pair(blocks, block_of, t, 3, 0, pair_block(g3, g0, h3, h0, vmu, vlam))
    add_pair(blocks, block_of, t, 1, 1, pair_block(g1, g1, h1, h1, vmu, vlam))
    add_pair(blocks, block_of, t, 2, 1, pair_block(g2, g1, h2, h1, vmu, vlam))
    add_pair(blocks, block_of, t, 3, 1, pair_block(g3, g1, h3, h1, vmu, vlam))
    add_pair(blocks, block_of, t, 2, 2, pair_block(g2, g2, h2, h2, vmu, vlam))
    add_pair(blocks, block_of, t, 3, 2, pair_block(g3, g2, h3, h2, vmu, vlam))
    add_pair(blocks, block_of, t, 3, 3, pair_block(g3, g3, h3, h3, vmu, vlam))


@wp.kernel
def assemble_blocks(
    dm_inv: wp.array(dtype=wp.mat33d),
    rest_volume: wp.array(dtype=wp.float64),
    mu: wp.array(dtype=wp.float64),
    lam: wp.array(dtype=wp.float64),
    active: wp.array(dtype=wp.int32),
    rotation: wp.array(dtype=wp.mat33d),
    block_of: wp.array2d(dtype=wp.int32),
    blocks: wp.array(dtype=wp.mat33d),
):
    """Add each active tetrahedron's blocks at its stored rotation (``blocks`` starts at zero)."""
    t = wp.tid()
    if active[t] == 0:
        return
    vol = rest_volume[t]
    add_tet_blocks(blocks, block_of, t, dm_inv[t], rotation[t], vol * mu[t], vol * lam[t])


@wp.func
def row_product(
    p: wp.array(dtype=wp.vec3d),
    row_start: wp.array(dtype=wp.int32),
    columns: wp.array(dtype=wp.int32),
    blocks: wp.array(dtype=wp.mat33d),
    i: int,
) -> wp.vec3d:
    """Row ``i`` of K p."""
    acc = wp.vec3d()
    for j in range(row_start[i], row_start[i + 1]):
        acc += blocks[j] * p[columns[j]]
    return acc
