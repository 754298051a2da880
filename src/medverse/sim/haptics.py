"""Force feedback: a 1 kHz haptic loop beside the physics, input devices and force traces.

The loop never waits for the physics: each tick it reads the device position, takes the latest
grasp published by the physics step (sample and hold, 60 Hz or faster), computes F = k * dx
between the tool and the grasped tissue, sends it to the device and records it. By default it
runs in a process of its own (``Isolation.PROCESS``), so no Python the physics runs can delay a
tick; ``Isolation.THREAD`` keeps it in this process (for devices that cannot be sent to another
process). The physics and the 60 Hz visuals run elsewhere; only a few shared numbers cross.
"""

from __future__ import annotations

import pickle
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from medverse.core.errors import ConfigError
from medverse.sim.haptic_loop import (
    FORCE,
    SPAWN,
    STOP,
    TIP,
    ForceTrace,
    SharedSlots,
    process_main,
    request_realtime_priority,
    run_ticks,
    tick,
    trace_of,
)
from medverse.sim.tools import GraspState

# How long start() waits for a haptic process to come up (it imports numpy and medverse).
PROCESS_START_TIMEOUT_S = 60.0


class Isolation(StrEnum):
    """Where the haptic loop runs."""

    PROCESS = "process"
    THREAD = "thread"


class HapticDevice(Protocol):
    """A device that reports a tool position and may render a force."""

    def read_tip(self) -> np.ndarray:
        """Current tool tip position (m, simulation frame)."""
        ...

    def render_force(self, force: np.ndarray) -> None:
        """Apply ``force`` (N) to the user's hand (no-op for devices without motors)."""
        ...


class SimulatedDevice:
    """A scripted device: the tip follows ``path(t)`` (t in seconds since start).

    Args:
        path: Tip position as a function of time (a module-level function or class instance,
            so that the device can be sent to a haptic process).
    """

    def __init__(self, path: Callable[[float], np.ndarray]) -> None:
        self.path = path
        self.start = time.perf_counter()
        self.last_force = np.zeros(3)

    def read_tip(self) -> np.ndarray:
        """Tip position on the scripted path now."""
        return np.asarray(self.path(time.perf_counter() - self.start), dtype=np.float64)

    def render_force(self, force: np.ndarray) -> None:
        """Keep the force (a real device would drive its motors)."""
        self.last_force = force


class PointerInput:
    """Mouse or WebXR controller input: the latest pointer position is the tip (no motors).

    The web client sends positions at its own rate (60-90 Hz); the haptic loop samples the
    latest one, so the force readout still updates at 1 kHz. Tip and force live in shared
    memory, so a haptic process sees the tip this process sets.
    """

    def __init__(self, start: np.ndarray | None = None) -> None:
        self._slots = SharedSlots(6)
        if start is not None:
            self._slots.view[:3] = np.asarray(start, dtype=np.float64)

    def set_tip(self, tip: np.ndarray) -> None:
        """New pointer position (m, simulation frame), e.g. from a WebSocket event."""
        self._slots.view[:3] = np.asarray(tip, dtype=np.float64)

    def read_tip(self) -> np.ndarray:
        """The latest pointer position."""
        return self._slots.view[:3].copy()

    def render_force(self, force: np.ndarray) -> None:
        """Keep the force for the on-screen readout."""
        self._slots.view[3:] = force

    @property
    def last_force(self) -> np.ndarray:
        """The force last rendered (N)."""
        return self._slots.view[3:].copy()


@dataclass(frozen=True)
class GraspSnapshot:
    """What the physics last published: the grasp and its nodes' positions."""

    grasp: GraspState
    node_positions: np.ndarray


class HapticLoop:
    """Run F = k * dx at ``rate_hz`` beside the physics until :meth:`stop`.

    Args:
        device: Where the tip comes from and the force goes to. With ``Isolation.PROCESS`` it
            is sent to the haptic process, so it must pickle (a ``PointerInput``, or a
            ``SimulatedDevice`` whose path is a module-level function or class).
        rate_hz: Tick rate (1000 for haptic devices).
        realtime: Ask the OS for real-time (SCHED_FIFO) priority for the loop, as haptic
            software does; granted only with CAP_SYS_NICE (else it runs at normal priority,
            recorded in ``trace.realtime``). The loop sleeps between ticks, so it never
            starves other work.
        isolation: Run the loop in its own process (default) or on a thread of this one.
    """

    def __init__(
        self,
        device: HapticDevice,
        *,
        rate_hz: float = 1000.0,
        realtime: bool = True,
        isolation: Isolation | str = Isolation.PROCESS,
    ) -> None:
        if not 10.0 <= rate_hz <= 10000.0:
            raise ConfigError(f"haptic rate must be in [10, 10000] Hz, got {rate_hz}")
        self.device = device
        self.period = 1.0 / rate_hz
        self.realtime = realtime
        self.isolation = Isolation(isolation)
        self.trace = ForceTrace()
        self.snapshot: GraspSnapshot | None = None
        self.slots = SharedSlots()
        self.slots.view[TIP] = device.read_tip()
        self._thread: threading.Thread | None = None
        self._process: Any = None
        self._conn: Any = None
        self._flat = array("d")

    @property
    def latest_tip(self) -> np.ndarray:
        """The tip the loop read last (m)."""
        return self.slots.view[TIP].copy()

    @property
    def latest_force(self) -> np.ndarray:
        """The force the loop rendered last (N)."""
        return self.slots.view[FORCE].copy()

    def publish(self, snapshot: GraspSnapshot | None) -> None:
        """Physics side: hand over the latest grasp (a few shared numbers, no lock)."""
        self.snapshot = snapshot
        if snapshot is None:
            self.slots.publish_grasp(np.zeros(3), 0.0)
            return
        anchor = np.mean(snapshot.node_positions - snapshot.grasp.offsets, axis=0)
        self.slots.publish_grasp(anchor, snapshot.grasp.stiffness)

    def tick(self) -> np.ndarray:
        """One haptic update here and now: read the tip, compute and render F = k * dx."""
        return tick(self.slots, self.device)

    def start(self) -> HapticLoop:
        """Start the loop (for a process: once it runs); returns self.

        Raises:
            ConfigError: If the device cannot be sent to a haptic process.
        """
        if self.isolation == Isolation.THREAD:
            self._thread = threading.Thread(target=self._run_thread, name="haptic", daemon=True)
            self._thread.start()
            return self
        ours, theirs = SPAWN.Pipe(duplex=False)
        args = (self.slots, self.device, self.period, self.realtime, theirs)
        self._process = SPAWN.Process(target=process_main, args=args, name="haptic", daemon=True)
        try:
            self._process.start()
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            raise ConfigError(
                f"the haptic device cannot be sent to the haptic process ({err}); give it a "
                "picklable path, or use isolation='thread'"
            ) from err
        theirs.close()
        self._conn = ours
        if not ours.poll(PROCESS_START_TIMEOUT_S):
            self._process.terminate()
            raise ConfigError("the haptic process did not start")
        self.trace.realtime = bool(ours.recv())
        return self

    def _run_thread(self) -> None:
        if self.realtime:
            self.trace.realtime = request_realtime_priority()
        self._flat = run_ticks(self.slots, self.device, self.period)

    def stop(self) -> ForceTrace:
        """Stop the loop and return the recorded trace."""
        self.slots.view[STOP] = 1.0
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        elif self._process is not None:
            if self._conn.poll(10.0):
                try:
                    self._flat = self._conn.recv()
                except EOFError:  # the haptic process died (its error is on stderr)
                    self._flat = array("d")
            self._process.join(timeout=5.0)
            if self._process.is_alive():
                self._process.terminate()
        self.trace = trace_of(self._flat, self.trace.realtime)
        return self.trace
