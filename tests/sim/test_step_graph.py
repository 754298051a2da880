"""The recorded step graph moves the body exactly as the step's plain kernel launches do."""

from __future__ import annotations

import numpy as np

from medverse.sim.materials import Tissue, material_for
from medverse.sim.tools import SurgicalTool, ToolMode
from tests.sim.helpers import box_solver


def _pulled_and_poked(replay: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rest and final node positions after a pull, a release and a poke."""
    solver = box_solver((0.05, 0.05, 0.05), (4, 4, 4), material_for(Tissue.LIVER))
    if not replay:
        solver._graph = False  # plain launches every step
    tool = SurgicalTool(solver, grasp_radius=0.012, grasp_stiffness=200.0)
    tool.move_to(np.array([0.05, 0.025, 0.025]))
    tool.grasp()
    for step in range(20):  # pull, then let go and poke: springs and contact change mid-run
        if step == 10:
            tool.set_mode(ToolMode.POKE)
        tool.move_to(np.array([0.05 + 0.001 * step, 0.025, 0.025]))
        solver.step()
    return solver.mesh.points, solver.positions()


def test_graph_replay_equals_plain_launches() -> None:
    rest, replayed = _pulled_and_poked(True)
    plain = _pulled_and_poked(False)[1]
    assert np.abs(replayed - plain).max() == 0.0
    assert np.abs(plain - rest).max() > 1e-3  # the body did move
