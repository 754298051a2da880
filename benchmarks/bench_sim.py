"""Surgical-rehearsal benchmark: physics steps/s and 1 kHz haptic-loop period at 1k/5k/20k nodes.

Body: a 10 cm liver cube (Kuhn split, six tetrahedra per cell, base fixed) grasped at the top
and pulled in a circle by a simulated device; backward Euler at dt = 1/60 s with 10 CG
iterations, float64. For each size it measures the physics alone (the named baseline) and then
physics with the 1 kHz haptic loop running alongside in its own process (the figure that
counts), plus the haptic loop alone. Prints ratios against those baselines and writes
benchmarks/results/bench_sim-<device>-<date>.json. The last two lines are
``physics_steps_per_s_5k_nodes: X`` and ``haptic_p99_period_ms: X`` (5k nodes, physics
running). The tool follows the clock, so a slower machine takes bigger steps per frame.

    python benchmarks/bench_sim.py [--device cpu|cuda:0] [--seconds 4] [--sizes 1k,5k,20k]
        [--mesh liver-mesh/tetmesh.vtu]   # also an organ mesh (posterior half held)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import warp as wp

from medverse.sim.haptics import HapticLoop, SimulatedDevice
from medverse.sim.materials import Tissue, material_for
from medverse.sim.session import RehearsalSession
from medverse.sim.solver import SolverSettings, TissueSolver
from medverse.sim.tetmesh import TetMesh, box_mesh, read_tetmesh
from medverse.sim.tools import SurgicalTool

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = {"1k": 9, "5k": 16, "20k": 26}  # (c + 1)^3 nodes: 1,000 / 4,913 / 19,683
EDGE_M = 0.1
THREADS = (
    "physics on one thread (Warp CPU kernels are single-threaded; each step replayed as one "
    "recorded Warp graph), haptic loop in its own process"
)


def cpu_isa() -> str:
    """The vector ISA of this CPU as /proc/cpuinfo reports it."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split()
    except (OSError, IndexError):
        return platform.processor() or "unknown"
    names = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx2", "fma") if f in flags]
    return " ".join(names) or "no AVX"


@dataclass(frozen=True)
class CirclePath:
    """A scripted tip: from ``start``, lifted by ``lift`` and circling in the (u, v) plane.

    A module-level class, so the simulated device pickles into the haptic process.
    """

    start: np.ndarray
    lift: np.ndarray
    u: np.ndarray
    v: np.ndarray
    radius: float = 0.02
    omega: float = 2.0

    def __call__(self, t: float) -> np.ndarray:
        """The tip at ``t`` s."""
        turn = np.sin(self.omega * t) * self.u + (np.cos(self.omega * t) - 1.0) * self.v
        return self.start + self.lift + self.radius * turn


def resting(t: float) -> np.ndarray:
    """A tip that stays at the origin (the haptic-alone baseline)."""
    return np.zeros(3)


def build(cells: int, device: str) -> tuple[TissueSolver, SurgicalTool, SimulatedDevice]:
    mesh = box_mesh((EDGE_M, EDGE_M, EDGE_M), (cells, cells, cells))
    fixed = np.flatnonzero(mesh.points[:, 2] < 1e-12)
    solver = TissueSolver(
        mesh, material_for(Tissue.LIVER), fixed=fixed, settings=SolverSettings(device=device)
    )
    tool = SurgicalTool(solver, grasp_radius=0.015, grasp_stiffness=300.0)
    top = np.array([EDGE_M / 2, EDGE_M / 2, EDGE_M])
    tool.move_to(top)
    tool.grasp()
    x, y, z = np.eye(3)
    return solver, tool, SimulatedDevice(CirclePath(top, 0.02 * z, x, y))


def build_organ(path: Path, device: str) -> tuple[TissueSolver, SurgicalTool, SimulatedDevice]:
    """A mesh from ``medverse sim mesh`` (RAS mm) on its bed: posterior half held, front pulled."""
    mm = read_tetmesh(path)
    mesh = TetMesh(mm.points * 1e-3, mm.tets)
    y = mesh.points[:, 1]
    fixed = np.flatnonzero(y < y.min() + 0.5 * (y.max() - y.min()))
    settings = SolverSettings(device=device, gravity=(0.0, -9.81, 0.0))
    solver = TissueSolver(mesh, material_for(Tissue.LIVER), fixed=fixed, settings=settings)
    tool = SurgicalTool(solver, grasp_radius=0.015, grasp_stiffness=300.0)
    top = mesh.points[np.argmax(y)]
    tool.move_to(top)
    tool.grasp()
    x, y, z = np.eye(3)
    return solver, tool, SimulatedDevice(CirclePath(top, 0.02 * y, x, z))


def physics_alone(
    solver: TissueSolver, tool: SurgicalTool, dev: SimulatedDevice, seconds: float
) -> tuple[float, float, float]:
    """Steps per wall second, per CPU second, and the least CPU time of one step (ms).

    CPU time is this process's (one busy thread). On a shared machine the least step CPU time
    is the figure least inflated by the others' load (cache and core sharing).
    """
    steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
    least = float("inf")
    while time.perf_counter() - start < seconds:
        step_start = time.thread_time()
        tool.move_to(dev.read_tip())
        solver.step()
        solver.positions()  # what a frame or the haptic snapshot reads back (syncs a GPU)
        least = min(least, time.thread_time() - step_start)
        steps += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return steps / wall, steps / max(cpu, 1e-9), least * 1e3


def measure_size(
    label: str, device: str, seconds: float, mesh: Path | None = None
) -> dict[str, float | int]:
    solver, tool, dev = build(CELLS[label], device) if mesh is None else build_organ(mesh, device)
    solver.step()  # compile/load kernels outside the timing
    alone, per_cpu_second, least_cpu_ms = physics_alone(solver, tool, dev, seconds)
    with_haptics = RehearsalSession(solver, tool, dev).run(seconds)
    assert np.isfinite(solver.positions()).all()
    return {
        "nodes": solver.n_nodes,
        "tetrahedra": len(solver.mesh.tets),
        "inverted_tets_at_end": solver.inverted_count(),
        "physics_alone_steps_per_s": alone,
        "physics_steps_per_cpu_s": per_cpu_second,
        "physics_step_cpu_ms_min": least_cpu_ms,
        "physics_steps_per_s": with_haptics.physics_steps_per_s,
        "haptic_median_ms": with_haptics.haptic["median_ms"],
        "haptic_p99_ms": with_haptics.haptic["p99_ms"],
        "haptic_max_ms": with_haptics.haptic["max_ms"],
        "haptic_rate_hz": with_haptics.haptic["rate_hz"],
        "haptic_realtime_priority": bool(with_haptics.haptic["realtime"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sizes", default="1k,5k,20k")
    parser.add_argument("--mesh", type=Path, help="also time a `medverse sim mesh` organ mesh")
    args = parser.parse_args()
    wp.init()
    compile_start = time.perf_counter()
    build(2, args.device)[0].step()
    compile_s = time.perf_counter() - compile_start
    haptic_only = HapticLoop(SimulatedDevice(resting)).start()
    time.sleep(args.seconds)
    baseline = haptic_only.stop().period_stats_ms()
    load = os.getloadavg()
    print(
        f"device {args.device}; CPU {platform.machine()} ISA: {cpu_isa()}; "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} (shared machine)"
    )
    print(f"precision float64; threads: {THREADS}; dt 1/60 s, 10 CG iterations")
    print(f"kernel module load (compile on first run, else cache): {compile_s:.1f} s")
    granted = "granted" if baseline["realtime"] else "not granted (no CAP_SYS_NICE)"
    print(f"haptic loop real-time (SCHED_FIFO) priority: {granted}")
    print(
        f"baseline haptic loop alone: median {baseline['median_ms']:.3f} ms, "
        f"p99 {baseline['p99_ms']:.3f} ms"
    )
    sizes = {}
    labels = args.sizes.split(",") + (["organ"] if args.mesh else [])
    for label in labels:
        r = measure_size(label, args.device, args.seconds, args.mesh if label == "organ" else None)
        sizes[label] = r
        print(
            f"{label:>3}: {r['nodes']} nodes {r['tetrahedra']} tets | physics "
            f"{r['physics_steps_per_s']:.1f} steps/s (alone {r['physics_alone_steps_per_s']:.1f}, "
            f"ratio {r['physics_steps_per_s'] / r['physics_alone_steps_per_s']:.2f}; "
            f"{r['physics_steps_per_cpu_s']:.1f} per CPU-second; least step CPU "
            f"{r['physics_step_cpu_ms_min']:.2f} ms) | haptic "
            f"median {r['haptic_median_ms']:.3f} ms p99 {r['haptic_p99_ms']:.3f} ms "
            f"(p99 ratio vs alone {r['haptic_p99_ms'] / baseline['p99_ms']:.2f}) "
            f"rate {r['haptic_rate_hz']:.0f} Hz | inverted tets at end {r['inverted_tets_at_end']}"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    device_name = args.device.replace(":", "")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_sim-{device_name}-{stamp}.json"
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "cpu_isa": cpu_isa(),
        "cores": os.cpu_count(),
        "load_average_1min": load[0],
        "precision": "float64",
        "threads": THREADS,
        "dt_s": 1 / 60,
        "cg_iterations": 10,
        "kernel_load_s": compile_s,
        "haptic_alone": baseline,
        "sizes": sizes,
        "organ_mesh": str(args.mesh) if args.mesh else None,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    five = sizes.get("5k", {})
    print(f"physics_steps_per_s_5k_nodes: {five.get('physics_steps_per_s', float('nan')):.1f}")
    print(f"haptic_p99_period_ms: {five.get('haptic_p99_ms', float('nan')):.3f}")


if __name__ == "__main__":
    main()
