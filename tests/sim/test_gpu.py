"""The same solver code on CUDA: energy gradient, hanging bar and a short pull (needs a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from medverse.sim.materials import Material, Tissue, material_for
from medverse.sim.solver import SolverSettings, TissueSolver
from medverse.sim.tetmesh import box_mesh
from medverse.sim.tools import SurgicalTool

pytestmark = pytest.mark.gpu


def _pair(mesh, material, fixed, gravity=(0.0, 0.0, -9.81)):  # type: ignore[no-untyped-def]
    return [
        TissueSolver(
            mesh, material, fixed=fixed, settings=SolverSettings(gravity=gravity, device=d)
        )
        for d in ("cpu", "cuda:0")
    ]


def test_cuda_matches_cpu_on_energy_forces_and_a_pull() -> None:
    mesh = box_mesh((0.06, 0.06, 0.03), (6, 6, 3))
    fixed = np.flatnonzero(mesh.points[:, 2] < 1e-12)
    results = []
    for solver in _pair(mesh, material_for(Tissue.LIVER), fixed):
        tool = SurgicalTool(solver, grasp_radius=0.012)
        tool.move_to(np.array([0.03, 0.03, 0.03]))
        tool.grasp()
        for i in range(60):
            tool.move_to(np.array([0.03, 0.03, 0.03 + 0.0005 * i]))
            solver.step()
        results.append((solver.positions(), *solver.energy_and_forces(), tool.force()))
    (p_cpu, e_cpu, f_cpu, t_cpu), (p_gpu, e_gpu, f_gpu, t_gpu) = results
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-9)
    assert e_gpu == pytest.approx(e_cpu, rel=1e-8)
    np.testing.assert_allclose(f_gpu, f_cpu, atol=1e-8 * np.abs(f_cpu).max())
    np.testing.assert_allclose(t_gpu, t_cpu, rtol=1e-6)


def test_hanging_bar_on_cuda() -> None:
    length, e, rho = 0.1, 1.0e6, 1000.0
    mesh = box_mesh((length, 0.02, 0.02), (20, 2, 2))
    fixed = np.flatnonzero(mesh.points[:, 0] < 1e-12)
    solver = TissueSolver(
        mesh,
        Material(e, 0.0, rho),
        fixed=fixed,
        settings=SolverSettings(gravity=(-9.81, 0.0, 0.0), device="cuda:0"),
    )
    solver.solve_static()
    bottom = mesh.points[:, 0] > length - 1e-12
    elongation = -(solver.positions()[bottom, 0] - length).mean()
    assert elongation == pytest.approx(rho * 9.81 * length**2 / (2 * e), rel=0.03)
