"""The haptic loop: ticks in its own process or thread, F = k dx from the latest grasp, traces."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest

from medverse.core.errors import ConfigError
from medverse.sim.haptic_loop import SEQUENCE
from medverse.sim.haptics import (
    GraspSnapshot,
    HapticLoop,
    Isolation,
    PointerInput,
    SimulatedDevice,
)
from medverse.sim.materials import Tissue, material_for
from medverse.sim.session import RehearsalSession
from medverse.sim.tools import GraspState, SurgicalTool
from tests.sim.helpers import box_solver

TOP = np.array([0.03, 0.03, 0.03])


def along_x(t: float) -> np.ndarray:
    """A scripted tip path that pickles (module level), for the haptic process."""
    return np.array([t, 0.0, 0.0])


def lifting(t: float) -> np.ndarray:
    """The tip rises 2 cm above the box's top centre at 5 cm/s."""
    return TOP + np.array([0.0, 0.0, min(0.02, 0.05 * t)])


class FailingDevice:
    """A device whose position cannot be read (a driver that fails in the haptic process)."""

    def read_tip(self) -> np.ndarray:
        """Fail."""
        raise RuntimeError("device unplugged")

    def render_force(self, force: np.ndarray) -> None:
        """Never reached."""


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


@pytest.mark.parametrize("isolation", list(Isolation))
def test_loop_runs_on_its_own_and_writes_a_trace(tmp_path: Path, isolation: Isolation) -> None:
    loop = HapticLoop(SimulatedDevice(along_x), rate_hz=1000.0, isolation=isolation)
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


@pytest.mark.parametrize("isolation", list(Isolation))
def test_session_couples_physics_tool_and_haptics(isolation: Isolation) -> None:
    solver = box_solver((0.06, 0.06, 0.03), (4, 4, 2), material_for(Tissue.SPLEEN), fixed_axis=2)
    tool = SurgicalTool(solver, grasp_radius=0.012, grasp_stiffness=200.0)
    tool.move_to(TOP)
    assert tool.grasp() is not None
    solver.step()  # loads (or compiles) the kernels before the timed run
    device = SimulatedDevice(lifting)
    frames: list[np.ndarray] = []
    session = RehearsalSession(
        solver, tool, device, on_frame=frames.append, frame_hz=60.0, isolation=isolation
    )
    stats = session.run(0.6)
    assert stats.physics_steps > 0 and stats.haptic["rate_hz"] > 0
    assert session.haptics.latest_force[2] < 0  # pulled up: the tissue pulls back down
    assert np.isfinite(solver.positions()).all()


def test_rate_outside_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="haptic rate"):
        HapticLoop(PointerInput(), rate_hz=1e6)


def test_the_haptic_process_sees_the_pointer_this_process_moves() -> None:
    """F = k dx in the haptic process, from a tip set here and a grasp published here."""
    pointer = PointerInput(np.zeros(3))
    loop = HapticLoop(pointer).start()
    try:
        grasp = GraspState(np.array([0]), np.zeros((1, 3)), 100.0)
        loop.publish(GraspSnapshot(grasp, np.array([[0.0, 0.0, 0.01]])))
        pointer.set_tip(np.array([0.0, 0.0, 0.03]))
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and loop.latest_force[2] > -1.9:
            time.sleep(0.01)
    finally:
        trace = loop.stop()
    np.testing.assert_allclose(loop.latest_force, [0.0, 0.0, 100.0 * (0.01 - 0.03)], rtol=1e-12)
    np.testing.assert_allclose(pointer.last_force, loop.latest_force)
    assert len(trace.times) > 0


def test_a_device_that_cannot_reach_the_haptic_process_is_refused() -> None:
    loop = HapticLoop(SimulatedDevice(lambda t: np.zeros(3)))
    with pytest.raises(ConfigError, match="isolation='thread'"):
        loop.start()


def test_a_writer_stuck_mid_update_gives_no_force_instead_of_a_spinning_loop() -> None:
    pointer = PointerInput(np.zeros(3))
    loop = HapticLoop(pointer, isolation=Isolation.THREAD)
    grasp = GraspState(np.array([0]), np.zeros((1, 3)), 100.0)
    loop.publish(GraspSnapshot(grasp, np.array([[0.0, 0.0, 0.01]])))
    assert loop.tick()[2] == pytest.approx(1.0)
    loop.slots.view[SEQUENCE] += 1.0  # as if the physics died between its two counter bumps
    np.testing.assert_array_equal(loop.tick(), np.zeros(3))


def test_a_haptic_process_that_dies_is_stopped_with_an_empty_trace() -> None:
    loop = HapticLoop(PointerInput())
    loop.device = FailingDevice()  # the process gets this one; the constructor read the pointer
    loop.start()
    time.sleep(0.2)
    trace = loop.stop()
    assert trace.times == []
    with pytest.raises(ConfigError, match="no haptic ticks"):
        trace.period_stats_ms()
