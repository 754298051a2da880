"""A rehearsal in a room: the tissue simulation runs server-side; compact frames go to everyone.

One participant (the driver) moves the tool (mouse or WebXR controller positions, RAS mm) and
grasps, releases or cuts; the physics steps on its own thread with the 1 kHz haptic loop beside
it, and every frame (30 Hz by default) the surface vertex positions are sent to all
participants, quantised to uint16 over the body's box (6 bytes a vertex, base64), with the
force on the tool. ``rehearsal_start`` carries the surface triangles and the box once.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medverse.service.errors import ServiceError
from medverse.sim.haptics import GraspSnapshot, HapticLoop, PointerInput
from medverse.sim.materials import Material
from medverse.sim.solver import SolverSettings, TissueSolver
from medverse.sim.tetmesh import TetMesh
from medverse.sim.tools import SurgicalTool, ToolMode

MM = 1e-3
# Quantisation box margin around the rest shape (m): tissue pulled further is clipped on screen.
BOX_MARGIN_M = 0.05
# Frames are skipped while no surface vertex moves this far (m) and the force stays the same.
STILL_M = 0.05 * MM
# Relative residual of the static solve that settles the body before the rehearsal starts.
SETTLE_TOLERANCE = 1e-4
# Supine patient in RAS: gravity points posterior (-A).
GRAVITY_RAS = (0.0, -9.81, 0.0)


class NotDriverError(ServiceError):
    """Only the participant driving the tool may move it."""

    status_code = 409


@dataclass(frozen=True)
class ToolEvent:
    """What the driver does: ``move`` (to ``position_mm``), ``grasp``, ``release``, ``cut``."""

    action: str
    position_mm: tuple[float, float, float]


class RoomRehearsal:
    """Run one body and one tool for a room; ``send_all`` broadcasts each encoded frame.

    Args:
        mesh: Rest mesh in RAS millimetres (from ``medverse sim mesh``).
        material: Tissue material.
        driver: Participant id allowed to drive the tool.
        send_all: Broadcast function of the room (called from the physics thread; make it
            thread-safe, e.g. with ``loop.call_soon_threadsafe``).
        fixed: Nodes held in place (attachments to neighbouring anatomy).
        frame_hz: Frames per second sent to the room.
    """

    def __init__(
        self,
        mesh: TetMesh,
        material: Material,
        *,
        driver: str,
        send_all: Callable[[str], None],
        fixed: np.ndarray | None = None,
        frame_hz: float = 30.0,
    ) -> None:
        metres = TetMesh(mesh.points * MM, mesh.tets)
        settings = SolverSettings(gravity=GRAVITY_RAS)
        self.solver = TissueSolver(metres, material, fixed=fixed, settings=settings)
        self.tool = SurgicalTool(self.solver)
        self.pointer = PointerInput(metres.points.mean(axis=0))
        self.haptics = HapticLoop(self.pointer)
        self.driver = driver
        self.send_all = send_all
        self.frame_period = 1.0 / frame_hz
        self.faces = metres.surface_faces()
        self.surface_nodes = np.unique(self.faces)
        self.low = metres.points.min(axis=0) - BOX_MARGIN_M
        self.span = metres.points.max(axis=0) + BOX_MARGIN_M - self.low
        self._stop = threading.Event()
        self._lock = threading.Lock()  # tool events and physics steps take turns
        self._thread = threading.Thread(target=self._run, name="rehearsal", daemon=True)
        self._last_cut: np.ndarray | None = None
        self.frames_sent = 0
        self.start_text = ""
        self._last_sent: tuple[np.ndarray, list[float]] | None = None

    def start(self) -> None:
        """Settle the body under gravity, send ``rehearsal_start``, start physics and haptics.

        The settled shape is the one ``rehearsal_start`` carries as ``rest_u16``: what every
        participant sees before the tool touches it (a few millimetres of sag from the mesh).
        """
        self.solver.solve_static(tolerance=SETTLE_TOLERANCE)
        local = {int(n): i for i, n in enumerate(self.surface_nodes)}
        faces = np.vectorize(local.__getitem__)(self.faces).astype(np.uint32)
        self.start_text = json.dumps(
            {
                "type": "rehearsal_start",
                "driver": self.driver,
                "vertex_count": len(self.surface_nodes),
                "faces_u32": _b64(faces),
                "box_min_mm": (self.low / MM).tolist(),
                "box_size_mm": (self.span / MM).tolist(),
                "rest_u16": _b64(self.quantised(self.solver.positions())),
            }
        )
        self.send_all(self.start_text)
        self.haptics.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop the threads and tell the room."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.haptics.stop()
        self.send_all(json.dumps({"type": "rehearsal_stop"}))

    def drive(self, participant: str, event: ToolEvent) -> None:
        """Apply the driver's tool event (positions in RAS mm).

        Raises:
            NotDriverError: If ``participant`` is not the driver.
        """
        if participant != self.driver:
            raise NotDriverError("another participant drives the tool")
        position = np.asarray(event.position_mm, dtype=np.float64) * MM
        self.pointer.set_tip(position)
        with self._lock:
            self._apply(event.action, position)

    def _apply(self, action: str, position: np.ndarray) -> None:
        if action == "grasp":
            self.tool.move_to(position)
            self.tool.grasp()
        elif action == "release":
            self.tool.set_mode(ToolMode.POKE)
        elif action == "cut":
            self._cut(position)

    def _cut(self, position: np.ndarray) -> None:
        if self._last_cut is not None:
            across = np.cross(position - self._last_cut, (0.0, 0.0, 1.0))
            if np.linalg.norm(across) > 1e-6:
                blade = 0.02 * across / np.linalg.norm(across)
                self.tool.cut(
                    self._last_cut - blade, self._last_cut + blade, position - self._last_cut
                )
        self._last_cut = position

    def _run(self) -> None:
        next_frame = time.perf_counter()
        while not self._stop.is_set():
            with self._lock:
                self.tool.move_to(self.pointer.read_tip())
                self.solver.step()
                positions = self.solver.positions()
                grasp = self.tool.grasp_state
            self.haptics.publish(
                None if grasp is None else GraspSnapshot(grasp, positions[grasp.nodes])
            )
            if (now := time.perf_counter()) >= next_frame:
                text = self.frame(positions)
                if text is not None:
                    self.send_all(text)
                next_frame = max(next_frame + self.frame_period, now)
            else:
                time.sleep(max(0.0, min(self.solver.settings.dt, next_frame - time.perf_counter())))

    def quantised(self, positions: np.ndarray) -> np.ndarray:
        """Surface vertices as uint16 over the box (little-endian, x y z per vertex)."""
        surface = (positions[self.surface_nodes] - self.low) / self.span
        return np.round(np.clip(surface, 0.0, 1.0) * 65535).astype("<u2")

    def frame(self, positions: np.ndarray) -> str | None:
        """Encode one frame: quantised surface vertices and the haptic force readout.

        None when nothing visibly changed since the last frame sent (no surface vertex moved
        ``STILL_MM`` and the force is the same): a body at rest costs the room nothing.
        """
        surface = positions[self.surface_nodes]
        force = [round(float(f), 4) for f in self.haptics.latest_force]
        last = self._last_sent
        if last is not None and force == last[1] and np.abs(surface - last[0]).max() < STILL_M:
            return None
        self._last_sent = (surface, force)
        quantised = self.quantised(positions)
        self.frames_sent += 1
        return json.dumps(
            {
                "type": "rehearsal_frame",
                "seq": self.frames_sent,
                "t": time.time(),
                "vertices_u16": _b64(quantised),
                "force_n": force,
            }
        )


def decode_vertices_mm(message: dict[str, object], start: dict[str, object]) -> np.ndarray:
    """Vertices (RAS mm) of a ``rehearsal_frame``, given the room's ``rehearsal_start``."""
    raw = base64.b64decode(str(message["vertices_u16"]))
    q = np.frombuffer(raw, dtype="<u2").reshape(-1, 3).astype(np.float64) / 65535
    low = np.asarray(start["box_min_mm"], dtype=np.float64)
    return low + q * np.asarray(start["box_size_mm"], dtype=np.float64)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
