"""Tools on a live body: the grasp spring, poking, cutting, and a long aggressive session."""

from __future__ import annotations

import numpy as np
import pytest

from medverse.core.errors import ConfigError
from medverse.sim.materials import Tissue, material_for
from medverse.sim.tools import SurgicalTool, ToolMode
from tests.sim.helpers import box_solver

SIZE = (0.06, 0.06, 0.03)


def _liver_block(cells: tuple[int, int, int] = (6, 6, 3)):  # type: ignore[no-untyped-def]
    return box_solver(SIZE, cells, material_for(Tissue.LIVER), fixed_axis=2)


def test_grasp_force_is_exactly_k_times_dx() -> None:
    solver = _liver_block()
    tool = SurgicalTool(solver, grasp_stiffness=150.0, grasp_radius=0.012)
    top = np.array([0.03, 0.03, 0.03])
    tool.move_to(top)
    grasp = tool.grasp()
    assert grasp is not None and len(grasp.nodes) > 1
    move = np.array([0.004, -0.002, 0.01])
    tool.move_to(top + move)
    # tissue not stepped yet: the grasped centroid is where it was, so dx = -move
    np.testing.assert_allclose(tool.force(), -150.0 * move, rtol=1e-12, atol=1e-15)
    for _ in range(30):
        solver.step()
    # after stepping, the same law with the current tissue positions
    nodes = solver.positions()[grasp.nodes]
    dx = (nodes - grasp.offsets).mean(axis=0) - tool.tip
    np.testing.assert_allclose(tool.force(), 150.0 * dx, rtol=1e-12)
    # and the tissue feels the opposite force: sum of the per-node springs = -F
    springs = solver.spring_k[grasp.nodes, None] * (tool.tip + grasp.offsets - nodes)
    np.testing.assert_allclose(springs.sum(axis=0), -tool.force(), rtol=1e-9)
    assert tool.force()[2] < 0  # pulled up, the tissue pulls the tool down


def test_poke_pushes_tissue_out_of_the_tool() -> None:
    solver = _liver_block()
    tool = SurgicalTool(solver, tip_radius=0.008)
    tool.set_mode(ToolMode.POKE)
    for depth in np.linspace(0.0, 0.01, 20):
        tool.move_to(np.array([0.03, 0.03, 0.038 - depth]))
        solver.step()
    distance = np.linalg.norm(solver.positions() - tool.tip, axis=1)
    assert distance.min() >= 0.008 - 1e-9
    assert solver.positions()[:, 2].max() < 0.03  # the top surface is pressed in


def test_cut_removes_tets_along_the_blade_and_stays_stable() -> None:
    solver = _liver_block()
    tool = SurgicalTool(solver)
    tool.set_mode(ToolMode.CUT)
    removed = tool.cut(
        np.array([0.035, -0.01, 0.035]), np.array([0.035, 0.07, 0.035]), np.array([0, 0, -0.02])
    )
    assert removed > 0
    centroids = solver.mesh.points[solver.mesh.tets].mean(axis=1)
    gone = solver.active == 0
    assert np.all(np.abs(centroids[gone, 0] - 0.035) < 0.01)
    for _ in range(100):
        solver.step()
    assert np.isfinite(solver.positions()).all()
    assert solver.inverted_count() == 0


def test_a_blade_that_does_not_sweep_is_refused() -> None:
    tool = SurgicalTool(_liver_block())
    with pytest.raises(ConfigError, match="sweep"):
        tool.cut(np.zeros(3), np.array([1.0, 0, 0]), np.array([2.0, 0, 0]))


def _aggressive_session(steps: int) -> None:
    """Grasp and yank the block around, poke it, cut it repeatedly; check it never breaks."""
    solver = _liver_block()
    tool = SurgicalTool(solver, grasp_stiffness=400.0, grasp_radius=0.01)
    rng = np.random.default_rng(1)
    anchor = np.array([0.03, 0.03, 0.03])
    for step in range(steps):
        phase = step % 400
        if phase == 0:
            tool.move_to(anchor + np.array([rng.uniform(-0.02, 0.02), 0.0, 0.0]))
            tool.grasp()
        elif phase < 200:  # pull hard: up to 4 cm, in a fast circle
            t = phase / 200
            pull = 0.04 * np.array([np.sin(12 * t), np.cos(9 * t), 1.0]) * t
            tool.move_to(tool.tip + (anchor + pull - tool.tip) * 0.5)
        elif phase == 200:
            tool.set_mode(ToolMode.CUT)
            x = rng.uniform(0.01, 0.05)
            tool.cut(
                np.array([x, -0.01, 0.04]), np.array([x, 0.07, 0.04]), np.array([0, 0, -0.015])
            )
            tool.set_mode(ToolMode.POKE)
        elif phase < 300:  # poke down into the top
            tool.move_to(anchor + np.array([0.0, 0.0, 0.01 - 0.015 * (phase - 200) / 100]))
        solver.step()
        if step % 100 == 99:
            assert np.isfinite(solver.positions()).all(), f"NaN at step {step}"
    tool.set_mode(ToolMode.CUT)  # let go of everything and let it settle
    for _ in range(120):
        solver.step()
    assert np.isfinite(solver.positions()).all()
    assert solver.inverted_count() == 0
    assert (solver.active == 0).any()


def test_aggressive_pulling_and_cutting_10000_steps() -> None:
    _aggressive_session(10_000)
