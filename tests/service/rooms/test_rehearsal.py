"""A room rehearsal: the driver grasps and pulls, every participant gets the deformed surface."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from medverse.service.rooms.rehearsal import (
    NotDriverError,
    RoomRehearsal,
    ToolEvent,
    decode_vertices_mm,
)
from medverse.sim.materials import Tissue, material_for
from medverse.sim.tetmesh import box_mesh


def test_driver_pulls_and_the_room_sees_the_deformation_and_the_force() -> None:
    mesh = box_mesh((60.0, 60.0, 30.0), (6, 6, 3))  # mm, RAS
    fixed = np.flatnonzero(mesh.points[:, 1] < 1e-9)  # posterior face held
    received: list[tuple[float, dict[str, object]]] = []
    lock = threading.Lock()

    def send_all(text: str) -> None:  # what every participant's socket would get
        with lock:
            received.append((time.perf_counter(), json.loads(text)))

    rehearsal = RoomRehearsal(
        mesh, material_for(Tissue.LIVER), driver="A", send_all=send_all, fixed=fixed
    )
    rehearsal.start()
    try:
        grip = (30.0, 60.0, 15.0)  # middle of the anterior face
        rehearsal.drive("A", ToolEvent("grasp", grip))
        with pytest.raises(NotDriverError):
            rehearsal.drive("B", ToolEvent("move", grip))
        pulled_at = time.perf_counter()
        for step in range(1, 21):
            rehearsal.drive("A", ToolEvent("move", (30.0, 60.0 + step, 15.0)))
            time.sleep(0.01)
        time.sleep(0.5)
    finally:
        rehearsal.stop()
    start = received[0][1]
    assert start["type"] == "rehearsal_start" and received[-1][1]["type"] == "rehearsal_stop"
    rest = mesh.points[np.unique(mesh.surface_faces())]
    deformed = [
        (t, m)
        for t, m in received
        if m["type"] == "rehearsal_frame"
        and t > pulled_at
        and np.abs(decode_vertices_mm(m, start) - rest).max() > 1.0
    ]
    assert deformed, "no frame showed the pulled surface"
    latency_ms = (deformed[0][0] - pulled_at) * 1e3
    print(f"first deformed frame {latency_ms:.0f} ms after the pull began")
    forces = [np.linalg.norm(m["force_n"]) for _, m in deformed]  # type: ignore[arg-type]
    assert max(forces) > 0.0
