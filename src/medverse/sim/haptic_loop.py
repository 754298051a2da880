"""The haptic tick loop, the shared slots it exchanges with the physics, and its force trace.

The loop runs either on a thread or in a process of its own (see ``HapticLoop``); both run
``run_ticks`` here. In its own process the loop has its own interpreter, so its period does not
depend on how long the physics holds the GIL between native calls (nor on the physics thread
being preempted while it holds it). The two sides share a handful of float64 slots: the physics
publishes the grasp anchor and stiffness, the loop publishes the tip it read and the force it
rendered. No locks: the anchor is written under a sequence counter (a seqlock), so a tick never
sees half an update.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medverse.core.errors import ConfigError
from medverse.io.atomic import atomic_path

# Processes are spawned, never forked: the physics process holds Warp, threads and locks.
SPAWN = mp.get_context("spawn")
# SCHED_FIFO priority of the haptic thread or process (1-99; low: above every normal thread,
# below the kernel's own real-time work).
REALTIME_PRIORITY = 10
# Slots of the shared block (float64).
TIP, FORCE, ANCHOR = slice(0, 3), slice(3, 6), slice(6, 9)
STIFFNESS, SEQUENCE, STOP, SLOTS = 9, 10, 11, 12
# The process loop checks every this many ticks that the process that started it is alive.
PARENT_CHECK_TICKS = 250
# Reads of the grasp slots a tick tries before it renders no force (a writer stuck mid-update).
GRASP_READ_TRIES = 100


class TipSource(Protocol):
    """The part of a haptic device the loop uses."""

    def read_tip(self) -> np.ndarray:
        """Current tool tip position (m, simulation frame)."""
        ...

    def render_force(self, force: np.ndarray) -> None:
        """Apply ``force`` (N) to the user's hand."""
        ...


class SharedSlots:
    """Float64 slots in shared memory, visible to a spawned process it is passed to."""

    def __init__(self, size: int = SLOTS) -> None:
        self.raw = SPAWN.RawArray("d", size)
        self.view = np.frombuffer(self.raw, dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        return {"raw": self.raw}  # allowed only while spawning a process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.raw = state["raw"]
        self.view = np.frombuffer(self.raw, dtype=np.float64)

    def publish_grasp(self, anchor: np.ndarray, stiffness: float) -> None:
        """Physics side: the grasp anchor (m) and its stiffness (N/m; 0 = nothing grasped)."""
        point = np.asarray(anchor, dtype=np.float64).reshape(3)  # checked before any write
        k = float(stiffness)
        v = self.view
        v[SEQUENCE] += 1.0  # odd: writing
        v[ANCHOR] = point
        v[STIFFNESS] = k
        v[SEQUENCE] += 1.0  # even: consistent again

    def grasp(self) -> tuple[np.ndarray, float]:
        """Loop side: a consistent (anchor, stiffness) pair; no grasp if none can be read.

        The retries are bounded: a writer that died mid-update must not leave a real-time
        loop spinning on a core.
        """
        v = self.view
        for _ in range(GRASP_READ_TRIES):
            before = v[SEQUENCE]
            anchor, stiffness = v[ANCHOR].copy(), float(v[STIFFNESS])
            if before % 2.0 == 0.0 and v[SEQUENCE] == before:
                return anchor, stiffness
        return np.zeros(3), 0.0


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


def tick(slots: SharedSlots, device: TipSource) -> np.ndarray:
    """One haptic update: read the tip, render F = k * dx of the published grasp; returns F.

    dx = anchor - tip, with anchor = mean(grasped node positions - their offsets at grasp):
    the same F = k * dx as ``GraspState.force_on_tool``.
    """
    tip = device.read_tip()
    anchor, stiffness = slots.grasp()
    force = stiffness * (anchor - tip) if stiffness > 0.0 else np.zeros(3)
    device.render_force(force)
    slots.view[TIP] = tip
    slots.view[FORCE] = force
    return force


def run_ticks(slots: SharedSlots, device: TipSource, period: float, parent: int = 0) -> array:
    """Tick every ``period`` s until the stop slot is set (or ``parent``, if given, is gone).

    Returns the trace flattened as (t, period, fx, fy, fz) per tick.
    """
    trace = array("d")
    clock = time.perf_counter
    deadline = previous = clock()
    ticks = 0
    while slots.view[STOP] == 0.0:
        force = tick(slots, device)
        now = clock()
        trace.extend((now, now - previous, float(force[0]), float(force[1]), float(force[2])))
        previous = now
        ticks += 1
        if parent and ticks % PARENT_CHECK_TICKS == 0 and os.getppid() != parent:
            break  # the physics process died: nobody will stop this loop
        # absolute deadlines keep the mean rate; after a late tick, restart from now instead of
        # bursting to catch up
        deadline += period
        if deadline <= now:
            deadline = now + period
        delay = deadline - clock()
        if delay > 0:
            time.sleep(delay)
    if trace:
        trace[1] = period  # the first tick has no predecessor
    return trace


def process_main(
    slots: SharedSlots, device: TipSource, period: float, realtime: bool, conn: Connection
) -> None:
    """Entry point of the haptic process: report readiness, tick, send the trace back."""
    granted = request_realtime_priority() if realtime else False
    conn.send(granted)
    conn.send(run_ticks(slots, device, period, parent=os.getppid()))
    conn.close()


def trace_of(flat: array, realtime: bool) -> ForceTrace:
    """A ``ForceTrace`` from ``run_ticks``' flattened (t, period, fx, fy, fz) rows."""
    rows = np.frombuffer(flat, dtype=np.float64).reshape(-1, 5)
    forces = [(float(f[0]), float(f[1]), float(f[2])) for f in rows[:, 2:]]
    return ForceTrace(rows[:, 0].tolist(), rows[:, 1].tolist(), forces, realtime)


def request_realtime_priority() -> bool:
    """Give the calling thread SCHED_FIFO priority 10 where the OS allows it; True if granted."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (AttributeError, OSError):  # not Linux, or no CAP_SYS_NICE
        return False
    return True
