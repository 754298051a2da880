"""Shared helpers for the simulation tests: small box bodies on the CPU."""

from __future__ import annotations

import numpy as np

from medverse.sim.materials import Material
from medverse.sim.solver import SolverSettings, TissueSolver
from medverse.sim.tetmesh import box_mesh


def box_solver(
    size: tuple[float, float, float],
    cells: tuple[int, int, int],
    material: Material,
    *,
    fixed_axis: int = 0,
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81),
    cg_iterations: int = 20,
) -> TissueSolver:
    """A box body on the CPU with the face at coordinate 0 of ``fixed_axis`` held."""
    mesh = box_mesh(size, cells)
    fixed = np.flatnonzero(mesh.points[:, fixed_axis] < 1e-12)
    settings = SolverSettings(gravity=gravity, cg_iterations=cg_iterations, device="cpu")
    return TissueSolver(mesh, material, fixed=fixed, settings=settings)
