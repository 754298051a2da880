"""A rehearsal session: physics steps on the caller's thread, haptics at 1 kHz, visuals at 60 Hz."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medverse.sim.haptics import GraspSnapshot, HapticDevice, HapticLoop, Isolation
from medverse.sim.solver import TissueSolver
from medverse.sim.tools import SurgicalTool

# GIL switch interval while a session runs: well under the 1 ms haptic period.
SWITCH_INTERVAL_S = 0.0002


@dataclass(frozen=True)
class SessionStats:
    """What a run measured.

    Attributes:
        physics_steps: Steps taken.
        physics_steps_per_s: Steps per wall-clock second.
        frames: Visual frames delivered.
        haptic: Haptic tick statistics (median_ms, p99_ms, max_ms, rate_hz).
    """

    physics_steps: int
    physics_steps_per_s: float
    frames: int
    haptic: dict[str, float]


class RehearsalSession:
    """Couple a solver, a tool and a device; physics and haptics run at their own rates.

    Args:
        solver: The tissue body.
        tool: The tool acting on it.
        device: The input device (simulated device, pointer, or a real haptic device).
        haptic_rate_hz: Haptic loop rate.
        frame_hz: Rate of ``on_frame`` calls (visual updates).
        on_frame: Called with node positions (m) at most ``frame_hz`` times a second.
        isolation: Where the haptic loop runs (its own process by default).
    """

    def __init__(
        self,
        solver: TissueSolver,
        tool: SurgicalTool,
        device: HapticDevice,
        *,
        haptic_rate_hz: float = 1000.0,
        frame_hz: float = 60.0,
        on_frame: Callable[[np.ndarray], None] | None = None,
        isolation: Isolation | str = Isolation.PROCESS,
    ) -> None:
        self.solver = solver
        self.tool = tool
        self.device = device
        self.haptics = HapticLoop(device, rate_hz=haptic_rate_hz, isolation=isolation)
        self.frame_period = 1.0 / frame_hz
        self.on_frame = on_frame

    def physics_step(self) -> None:
        """Move the tool to the device, step the body, publish the grasp to the haptic loop."""
        self.tool.move_to(self.device.read_tip())
        self.solver.step()
        grasp = self.tool.grasp_state
        if grasp is None:
            self.haptics.publish(None)
        else:
            positions = self.solver.positions()[grasp.nodes]
            self.haptics.publish(GraspSnapshot(grasp, positions))

    def run(self, duration_s: float, *, real_time: bool = False) -> SessionStats:
        """Step for ``duration_s`` wall seconds with the haptic loop running alongside.

        Args:
            duration_s: Wall-clock duration.
            real_time: Pace physics to one step per ``dt`` (else step as fast as possible).
        """
        # A haptic thread (Isolation.THREAD) needs the GIL the physics holds between kernel
        # launches; Python's default 5 ms switch interval would let the physics keep it waiting
        # for whole milliseconds, so the interval is shortened for the run (and restored after).
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.haptics.start()
        steps = frames = 0
        start = last_frame = time.perf_counter()
        try:
            while (now := time.perf_counter()) - start < duration_s:
                self.physics_step()
                steps += 1
                if self.on_frame is not None and now - last_frame >= self.frame_period:
                    self.on_frame(self.solver.positions())
                    frames += 1
                    last_frame = now
                if real_time:
                    lag = start + steps * self.solver.settings.dt - time.perf_counter()
                    if lag > 0:
                        time.sleep(lag)
        finally:
            trace = self.haptics.stop()
            sys.setswitchinterval(interval)
        elapsed = time.perf_counter() - start
        return SessionStats(steps, steps / elapsed, frames, trace.period_stats_ms())
