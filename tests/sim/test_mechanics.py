"""Mechanics of the Warp solver against analytic answers (float64, CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from medverse.sim.materials import Material
from medverse.sim.solver import SolverSettings, TissueSolver
from medverse.sim.tetmesh import TetMesh, box_mesh
from tests.sim.helpers import box_solver

G = 9.81


def test_forces_are_the_energy_gradient() -> None:
    """Forces -dE/dx against central differences of the energy, all 81 degrees of freedom."""
    mesh = box_mesh((1.0, 1.0, 1.0), (2, 2, 2))
    solver = TissueSolver(
        mesh, Material(1000.0, 0.3, 1000.0), settings=SolverSettings(device="cpu")
    )
    rng = np.random.default_rng(0)
    angle = 0.7
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]]
    )
    stretch = np.diag([1.2, 0.9, 1.05])
    deformed = mesh.points @ (rot @ stretch).T + 0.05 * rng.standard_normal(mesh.points.shape)
    solver.set_positions(deformed)
    energy, forces = solver.energy_and_forces()
    assert energy > 0
    eps = 1e-6
    numeric = np.zeros_like(forces)
    for node in range(len(deformed)):
        for axis in range(3):
            values = []
            for sign in (1.0, -1.0):
                moved = deformed.copy()
                moved[node, axis] += sign * eps
                solver.set_positions(moved)
                values.append(solver.energy_and_forces()[0])
            numeric[node, axis] = -(values[0] - values[1]) / (2 * eps)
    error = np.linalg.norm(numeric - forces) / np.linalg.norm(forces)
    assert error < 1e-5, error
    assert np.allclose(forces.sum(axis=0), 0.0, atol=1e-9 * np.abs(forces).max())


def test_rest_state_has_no_energy_and_rigid_rotation_costs_none() -> None:
    mesh = box_mesh((0.1, 0.05, 0.05), (2, 1, 1))
    solver = TissueSolver(mesh, Material(5e3, 0.45, 1000.0), settings=SolverSettings(device="cpu"))
    assert solver.energy_and_forces()[0] == pytest.approx(0.0, abs=1e-15)
    c, s = np.cos(1.0), np.sin(1.0)
    solver.set_positions(mesh.points @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T + 3.0)
    energy, forces = solver.energy_and_forces()
    assert energy == pytest.approx(0.0, abs=1e-12)
    assert np.abs(forces).max() < 1e-9


def test_hanging_bar_elongation_matches_rho_g_l2_over_2e() -> None:
    """A 10 cm bar hanging from its top face under its own weight (nu = 0: one-dimensional)."""
    length, e, rho = 0.1, 1.0e6, 1000.0
    solver = box_solver(
        (length, 0.02, 0.02), (20, 2, 2), Material(e, 0.0, rho), gravity=(-G, 0.0, 0.0)
    )
    solver.solve_static()
    bottom = solver.mesh.points[:, 0] > length - 1e-12
    elongation = -(solver.positions()[bottom, 0] - length).mean()
    analytic = rho * G * length**2 / (2 * e)
    assert elongation == pytest.approx(analytic, rel=0.03)


def test_cantilever_tip_deflection_matches_euler_bernoulli() -> None:
    """1 m x 0.1 m x 0.1 m steel-like cantilever clamped at x = 0 under its own weight.

    Mesh: 100 x 2 x 8 hexahedral cells (length x width x height), six tetrahedra each (9,600
    tets, 2,727 nodes). Linear tetrahedra lock in bending, and the error is governed by the
    layers through the height and the element length: 20 x 2 x 2 cells give 45 % error,
    40 x 4 x 4 give 17 %, 80 x 2 x 8 give 4 %. nu = 0 so the 1-D beam theory applies exactly.
    Uniform load q = rho g A: tip deflection q L^4 / (8 E I).
    """
    length, h, e, rho = 1.0, 0.1, 1.0e9, 1000.0
    solver = box_solver((length, h, h), (100, 2, 8), Material(e, 0.0, rho))
    solver.solve_static()
    tip = solver.mesh.points[:, 0] > length - 1e-12
    deflection = -(solver.positions()[tip, 2] - solver.mesh.points[tip, 2]).mean()
    analytic = rho * G * h * h * length**4 / (8 * e * h**4 / 12)
    assert deflection == pytest.approx(analytic, rel=0.05)


@pytest.mark.parametrize("inverted", [False, True])
def test_rotation_is_the_polar_one_or_the_inversion_safe_one(inverted: bool) -> None:
    """R maximises tr(R^T F) over rotations: U V^T, or U diag(1, 1, -1) V^T once det F < 0."""
    rest = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    solver = TissueSolver(
        TetMesh(rest, np.array([[0, 1, 2, 3]])),
        Material(1000.0, 0.3, 1000.0),
        settings=SolverSettings(device="cpu"),
    )
    rng = np.random.default_rng(3)
    for _ in range(5):
        f = np.eye(3) + 0.4 * rng.standard_normal((3, 3))
        if (np.linalg.det(f) < 0) != inverted:
            f[:, 0] *= -1.0
        solver.set_positions(rest @ f.T)
        solver.compute_forces()
        u, _, vt = np.linalg.svd(f)
        flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        expected = u @ flip @ vt
        np.testing.assert_allclose(solver.rotation.numpy()[0], expected, atol=1e-9)
