"""The warped stiffness assembled into node blocks: symmetric, blind to rigid motion, stiff."""

from __future__ import annotations

import numpy as np
import warp as wp

from medverse.sim import kernels as k
from medverse.sim.blocks import block_pattern
from medverse.sim.materials import Material
from medverse.sim.solver import SolverSettings, TissueSolver
from medverse.sim.tetmesh import box_mesh


def _rotated_body() -> tuple[TissueSolver, np.ndarray]:
    """A free 3 x 2 x 2-cell box turned rigidly by 0.9 rad, its stiffness assembled there."""
    mesh = box_mesh((0.06, 0.04, 0.04), (3, 2, 2))
    solver = TissueSolver(mesh, Material(5e3, 0.45, 1000.0), settings=SolverSettings(device="cpu"))
    c, s = np.cos(0.9), np.sin(0.9)
    turned = mesh.points @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T
    solver.set_positions(turned)
    solver.compute_forces()  # rotations at this shape
    solver._assemble()
    return solver, turned


def _stiffness_times(solver: TissueSolver, p: np.ndarray) -> np.ndarray:
    """K p through the CG's own product kernel (static coefficients: A = K, no springs)."""
    n = solver.n_nodes
    pw = wp.array(p, dtype=wp.vec3d, device="cpu")
    out = wp.zeros(n, dtype=wp.vec3d, device="cpu")
    scalars = wp.zeros(6, dtype=wp.float64, device="cpu")
    coeffs = wp.vec4d(1.0, 0.0, 0.0, 1.0)
    args = [pw, solver.row_start, solver.columns, solver.blocks, solver.mass, solver.fixed_d]
    wp.launch(k.system_product, n, [*args, solver.spring_k_d, coeffs, out, scalars], device="cpu")
    return np.asarray(out.numpy())


def test_pattern_holds_every_node_pair_of_every_tetrahedron_once() -> None:
    mesh = box_mesh((1.0, 1.0, 1.0), (2, 1, 1))
    pattern = block_pattern(mesh.tets, len(mesh.points))
    rows = np.repeat(np.arange(len(mesh.points)), np.diff(pattern.row_start))
    pairs = set(zip(rows.tolist(), pattern.columns.tolist()))
    assert len(pairs) == len(pattern.columns)  # no duplicate blocks
    for t, tet in enumerate(mesh.tets):
        for b in range(4):
            for a in range(4):
                block = pattern.block_of[t, 4 * b + a]
                assert (rows[block], pattern.columns[block]) == (tet[b], tet[a])


def test_assembled_stiffness_ignores_rigid_motion_and_resists_stretch() -> None:
    solver, x = _rotated_body()
    rng = np.random.default_rng(1)
    p, q = rng.standard_normal((2, solver.n_nodes, 3))
    kp, kq = _stiffness_times(solver, p), _stiffness_times(solver, q)
    scale = np.abs(kp).max()
    assert abs(np.sum(q * kp) - np.sum(p * kq)) < 1e-10 * scale * np.abs(p).sum()  # symmetric
    shift = np.tile([0.3, -0.2, 0.5], (solver.n_nodes, 1))
    spin = np.cross([0.1, 0.4, -0.2], x)
    assert np.abs(_stiffness_times(solver, shift)).max() < 1e-9 * scale
    assert np.abs(_stiffness_times(solver, spin)).max() < 1e-9 * scale
    stretch = x * np.array([1.0, 0.0, 0.0])
    assert np.sum(stretch * _stiffness_times(solver, stretch)) > 0
