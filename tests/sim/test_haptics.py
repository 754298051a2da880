"""The haptic loop: ticks on its own thread, F = k dx from the latest grasp, traces recorded."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest

from medverse.core.errors import ConfigError
from medverse.sim.haptics import GraspSnapshot, HapticLoop, PointerInput, SimulatedDevice
from medverse.sim.materials import Tissue, material_for
from medverse.sim.session import RehearsalSession
from medverse.sim.tools import GraspState, SurgicalTool
from tests.sim.helpers import box_solver


def test_tick_renders_k_dx_of_the_published_grasp() -> None:
    pointer = PointerInput(np.array([0.0, 0.0, 0.01]))
    loop = HapticLoop(pointer)
    assert np.array_equal(loop.tick(), np.zeros(3))  # nothing grasped: no force
    grasp = GraspState(np.array([3, 4]), np.array([[0.001, 0, 0], [-0.001, 0, 0]]), 250.0)
    nodes = np.array([[0.001, 0.0, 0.0], [-0.001, 0.0, 0.0]])  # centroid at the origin
    loop.publish(GraspSnapshot(grasp, nodes))
    force = loop.tick()
    np.testing.assert_allclose(force, 250.0 * (np.zeros(3) - pointer.read_tip()), rtol=1e-14)
    np.testing.assert_array_equal(pointer.last_force, force)


def test_loop_runs_on_its_own_thread_and_writes_a_trace(tmp_path: Path) -> None:
    loop = HapticLoop(SimulatedDevice(lambda t: np.array([t, 0.0, 0.0])), rate_hz=1000.0)
    loop.start()
    time.sleep(0.3)
    trace = loop.stop()
    assert len(trace.times) > 20  # no rate asserted here: the benchmark measures it
    stats = trace.period_stats_ms()
    assert stats["median_ms"] > 0
    path = trace.write_csv(tmp_path / "trace.csv")
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["t_s", "period_ms", "fx_n", "fy_n", "fz_n"]
    assert len(rows) == len(trace.times) + 1


def test_session_couples_physics_tool_and_haptics() -> None:
    solver = box_solver((0.06, 0.06, 0.03), (4, 4, 2), material_for(Tissue.SPLEEN), fixed_axis=2)
    tool = SurgicalTool(solver, grasp_radius=0.012, grasp_stiffness=200.0)
    top = np.array([0.03, 0.03, 0.03])
    tool.move_to(top)
    assert tool.grasp() is not None
    device = SimulatedDevice(lambda t: top + np.array([0.0, 0.0, min(0.02, 0.05 * t)]))
    frames: list[np.ndarray] = []
    session = RehearsalSession(solver, tool, device, on_frame=frames.append, frame_hz=60.0)
    stats = session.run(0.6)
    assert stats.physics_steps > 0 and stats.haptic["rate_hz"] > 0
    assert session.haptics.latest_force[2] < 0  # pulled up: the tissue pulls back down
    assert np.isfinite(solver.positions()).all()


def test_rate_outside_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="haptic rate"):
        HapticLoop(PointerInput(), rate_hz=1e6)
