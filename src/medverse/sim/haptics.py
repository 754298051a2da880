"""Force feedback: a 1 kHz haptic loop on its own thread, input devices and force traces.

The loop never waits for the physics: each tick it reads the device position, takes the latest
grasp published by the physics step (sample and hold, 60 Hz or faster), computes F = k * dx
between the tool and the grasped tissue, sends it to the device and records it. The physics
and the 60 Hz visuals run elsewhere; only immutable snapshots cross threads.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from medverse.core.errors import ConfigError
from medverse.io.atomic import atomic_path
from medverse.sim.tools import GraspState

# SCHED_FIFO priority of the haptic thread (1-99; low: above every normal thread, below the
# kernel's own real-time work).
REALTIME_PRIORITY = 10


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
        path: Tip position as a function of time.
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
    latest one, so the force readout still updates at 1 kHz.
    """

    def __init__(self, start: np.ndarray | None = None) -> None:
        self._tip = np.zeros(3) if start is None else np.asarray(start, dtype=np.float64)
        self.last_force = np.zeros(3)

    def set_tip(self, tip: np.ndarray) -> None:
        """New pointer position (m, simulation frame), e.g. from a WebSocket event."""
        self._tip = np.asarray(tip, dtype=np.float64).copy()

    def read_tip(self) -> np.ndarray:
        """The latest pointer position."""
        return self._tip

    def render_force(self, force: np.ndarray) -> None:
        """Keep the force for the on-screen readout."""
        self.last_force = force


@dataclass(frozen=True)
class GraspSnapshot:
    """What the physics last published: the grasp and its nodes' positions."""

    grasp: GraspState
    node_positions: np.ndarray


@dataclass
class ForceTrace:
    """Recorded haptic ticks: time (s), period since the previous tick (s), force (N)."""

    times: list[float] = field(default_factory=list)
    periods: list[float] = field(default_factory=list)
    forces: list[tuple[float, float, float]] = field(default_factory=list)
    realtime: bool = False

    def period_stats_ms(self) -> dict[str, float]:
        """Median, p99 and max tick period (ms), mean rate (Hz), realtime (1.0 if granted)."""
        if not self.periods:
            raise ConfigError("no haptic ticks recorded")
        p = np.asarray(self.periods) * 1e3
        span = self.times[-1] - self.times[0]
        return {
            "median_ms": float(np.median(p)),
            "p99_ms": float(np.percentile(p, 99)),
            "max_ms": float(p.max()),
            "rate_hz": (len(self.times) - 1) / span if span > 0 else 0.0,
            "realtime": float(self.realtime),
        }

    def write_csv(self, path: str | Path) -> Path:
        """Write ``t_s,period_ms,fx_n,fy_n,fz_n`` rows, atomically."""
        with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["t_s", "period_ms", "fx_n", "fy_n", "fz_n"])
            for t, dt, f in zip(self.times, self.periods, self.forces):
                out.writerow([f"{t:.6f}", f"{dt * 1e3:.4f}", *(f"{c:.6g}" for c in f)])
        return Path(path)


class HapticLoop:
    """Run F = k * dx at ``rate_hz`` on a daemon thread until :meth:`stop`.

    Args:
        device: Where the tip comes from and the force goes to.
        rate_hz: Tick rate (1000 for haptic devices).
        realtime: Ask the OS for real-time (SCHED_FIFO) priority for the loop's thread, as
            haptic software does; granted only with CAP_SYS_NICE (else it runs at normal
            priority, recorded in ``trace.realtime``). The loop sleeps between ticks, so it
            never starves other threads.
    """

    def __init__(
        self, device: HapticDevice, *, rate_hz: float = 1000.0, realtime: bool = True
    ) -> None:
        if not 10.0 <= rate_hz <= 10000.0:
            raise ConfigError(f"haptic rate must be in [10, 10000] Hz, got {rate_hz}")
        self.device = device
        self.period = 1.0 / rate_hz
        self.realtime = realtime
        self.trace = ForceTrace()
        self.snapshot: GraspSnapshot | None = None  # replaced whole by the physics thread
        self.latest_tip = device.read_tip()
        self.latest_force = np.zeros(3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="haptic-1kHz", daemon=True)

    def publish(self, snapshot: GraspSnapshot | None) -> None:
        """Physics side: hand over the latest grasp (one reference swap, no lock needed)."""
        self.snapshot = snapshot

    def start(self) -> HapticLoop:
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> ForceTrace:
        """Stop the thread and return the recorded trace."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        return self.trace

    def tick(self) -> np.ndarray:
        """One haptic update: read the tip, compute and render F = k * dx; returns F."""
        tip = self.device.read_tip()
        snap = self.snapshot
        force = np.zeros(3) if snap is None else snap.grasp.force_on_tool(snap.node_positions, tip)
        self.device.render_force(force)
        self.latest_tip, self.latest_force = tip, force
        return force

    def _run(self) -> None:
        if self.realtime:
            self.trace.realtime = _request_realtime_priority()
        clock = time.perf_counter
        deadline = previous = clock()
        while not self._stop.is_set():
            force = self.tick()
            now = clock()
            self.trace.times.append(now)
            self.trace.periods.append(now - previous)
            self.trace.forces.append((float(force[0]), float(force[1]), float(force[2])))
            previous = now
            # absolute deadlines keep the mean rate; after a late tick, restart from now
            # instead of bursting to catch up
            deadline += self.period
            if deadline <= now:
                deadline = now + self.period
            delay = deadline - clock()
            if delay > 0:
                time.sleep(delay)
        if self.trace.periods:
            self.trace.periods[0] = self.period  # the first tick has no predecessor


def _request_realtime_priority() -> bool:
    """Give the calling thread SCHED_FIFO priority 10 where the OS allows it; True if granted."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (AttributeError, OSError):  # not Linux, or no CAP_SYS_NICE
        return False
    return True
