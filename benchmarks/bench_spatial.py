"""Spatial parallelism: peak activation memory per rank and step time on 1, 2 and 4 ranks.

The same CT crop and the same network (the DynUNet preset) run as one plain process (the
baseline) and split along one axis over 2 and 4 gloo ranks (`spatial_parallel`), one
torch thread per rank, float32, on CPU.

Memory method: torch's CPU profiler with ``profile_memory=True`` records every allocation
and free of tensor memory; the running sum of those events, taken from the start of the
forward pass to its end (with autograd recording), peaks at the activation memory a
training step holds: every tensor saved for backward plus the largest transient. That
figure is the one compared. The peak over the whole step (forward, backward and the
parameter-gradient buffers, which every rank holds in full) is reported beside it, and so is
each rank's peak RSS (ru_maxrss, which also counts torch itself).

Run: ``.venv/bin/python benchmarks/bench_spatial.py`` (about 3-6 minutes on 2 busy cores).
Its last line is ``peak_memory_ratio_4_ranks: X`` (4-rank per-rank peak / 1-rank peak).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from torch._C._autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from medverse.io.nifti import read_nifti
from medverse.models.factory import build_network
from medverse.parallel.spatial import spatial_parallel
from medverse.parallel.spatial.launch import run_ranks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CT = ROOT.parent / "shared" / "data" / "totalsegmentator_example_ct" / "example_ct_sm.nii.gz"


def machine() -> dict[str, Any]:
    """CPU, ISA and precision of this run."""
    caps = torch.cpu.get_capabilities()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "avx512": bool(caps.get("avx512")),
        "bf16": bool(caps.get("avx512_bf16") or caps.get("amx_bf16")),
        "torch_threads_per_rank": 1,
        "precision": "float32",
        "torch": torch.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def ct_crop(shape: tuple[int, int, int]) -> torch.Tensor:
    """A centred crop of the TotalSegmentator sample CT, HU clipped and scaled, 1x1xDxHxW."""
    array = np.asarray(read_nifti(CT).array, dtype=np.float32)
    start = [max(0, (n - s) // 2) for n, s in zip(array.shape, shape, strict=True)]
    crop = array[tuple(slice(a, a + s) for a, s in zip(start, shape, strict=True))]
    if crop.shape != shape:
        raise SystemExit(f"{CT}: crop {shape} does not fit the volume {array.shape}")
    return torch.from_numpy(np.clip(crop, -1000, 1000) / 1000.0)[None, None].contiguous()


def _peaks(prof: Any, forward_end_ns: int) -> tuple[int, int]:
    """Peak live CPU tensor bytes during the forward pass and over the whole step."""
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    live = forward_peak = step_peak = 0
    for e in events:
        if e.device_type() != DeviceType.CPU:
            continue
        live += e.nbytes()
        step_peak = max(step_peak, live)
        if e.start_ns() <= forward_end_ns:
            forward_peak = max(forward_peak, live)
    return forward_peak, step_peak


def _step(net: torch.nn.Module, x: torch.Tensor) -> int:
    y = net(x)
    forward_end = time.time_ns()
    y.float().mean().backward()
    return forward_end


def measure(x: torch.Tensor, preset: str, axis: int) -> dict[str, float]:
    """One rank: a profiled step (memory), then a timed step."""
    torch.manual_seed(0)
    net: torch.nn.Module = build_network(preset, 1, 3)
    ranks = dist.get_world_size() if dist.is_initialized() else 1
    if ranks > 1:
        net = spatial_parallel(net, None, axis)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_end = _step(net, x)  # profiler events carry wall-clock (epoch) ns
    forward_peak, step_peak = _peaks(prof, forward_end)
    net.zero_grad(set_to_none=True)
    start = time.perf_counter()
    _step(net, x)
    seconds = time.perf_counter() - start
    return {
        "forward_peak_mib": forward_peak / 2**20,
        "step_peak_mib": step_peak / 2**20,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_seconds": seconds,
    }


def main() -> None:
    """Measure 1, 2 and 4 ranks; print the table; write the JSON; last line the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 48, 24))
    parser.add_argument("--preset", default="dynunet")
    parser.add_argument("--axis", type=int, default=0)
    parser.add_argument("--ranks", type=int, nargs="+", default=(1, 2, 4))
    args = parser.parse_args()
    console = Console()
    info = machine()
    x = ct_crop(tuple(args.shape))
    console.print(
        f"CPU {info['cpu']} ({info['cpu_cores']} cores) ISA {info['isa']} bf16={info['bf16']}; "
        f"1 thread per rank, float32; {args.preset} on CT crop {tuple(args.shape)}, "
        f"split along axis {args.axis}"
    )
    rows: dict[int, dict[str, float]] = {}
    for ranks in args.ranks:
        with console.status(f"{ranks} rank(s)"):
            per_rank = run_ranks(measure, ranks, (x, args.preset, args.axis), timeout_s=900)
        worst = {key: max(r[key] for r in per_rank) for key in per_rank[0]}
        rows[ranks] = worst
        console.print(
            f"{ranks} rank(s): activation peak/rank {worst['forward_peak_mib']:8.1f} MiB  "
            f"step peak/rank {worst['step_peak_mib']:8.1f} MiB  "
            f"max RSS {worst['max_rss_mib']:7.0f} MiB  step {worst['step_seconds']:6.2f} s"
        )
    base = rows[min(rows)]
    ratios = {n: r["forward_peak_mib"] / base["forward_peak_mib"] for n, r in rows.items()}
    for n, r in rows.items():
        console.print(
            f"{n} rank(s) vs 1 plain process: activation peak x{ratios[n]:.3f}, "
            f"step peak x{r['step_peak_mib'] / base['step_peak_mib']:.3f}, "
            f"time x{r['step_seconds'] / base['step_seconds']:.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    out = RESULTS / f"bench_spatial-cpu-{stamp}.json"
    record = {"machine": info, "args": vars(args), "baseline": "1 plain process", "ranks": rows}
    out.write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"wrote {out.relative_to(ROOT)}")
    print(f"peak_memory_ratio_4_ranks: {ratios.get(4, float('nan')):.3f}")


if __name__ == "__main__":
    main()
