"""MoE layer throughput: 1 process vs 2 expert-parallel ranks, against a dense layer of equal FLOPs.

Tokens of width ``--width`` go through a top-k MoE of ``--experts`` FFN experts (hidden
``--ffn``) with capacity factor 1.25, forward + backward, float32. The baseline is a dense FFN
whose hidden width is ``top_k * ffn``: the same multiply-adds per token as the MoE's chosen
experts. Expert parallelism runs ``medverse.parallel.experts.ExpertParallelMoE`` on 2 gloo
ranks (CPU; NCCL on CUDA), each with half the experts and half the tokens, one thread each;
the one-process runs use the same total threads, and are repeated on one thread; the ratios
use the faster of the two. Throughput is global tokens per second (median step). Results go to
benchmarks/results/bench_moe-<device>-<date>.json; the last line is
``moe_ep2_over_dense_tokens_per_s: X``.

    .venv/bin/python benchmarks/bench_moe.py [--tokens 2048] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from medverse.parallel.ddp import init_distributed, launch_local, shutdown
from medverse.parallel.expert_routing import MoELayer, RoutingConfig
from medverse.parallel.experts import ExpertParallelMoE, sync_replicated_grads

RESULTS = Path(__file__).resolve().parent / "results"


def ffn(width: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


def timed(step: Callable[[], None], steps: int, warmup: int = 2) -> float:
    """Median seconds per step."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_process(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(args.tokens, args.width)
    dense = ffn(args.width, args.top_k * args.ffn)
    experts = nn.ModuleList(ffn(args.width, args.ffn) for _ in range(args.experts))
    config = RoutingConfig(args.experts, args.top_k, 1.25)
    moe = MoELayer(nn.Linear(args.width, args.experts), experts, config, args.width)

    def dense_step() -> None:
        dense.zero_grad()
        dense(x).square().mean().backward()

    def moe_step() -> None:
        moe.zero_grad()
        result = moe(x, groups=2)  # capacity per half, as the 2 ranks enforce it
        (result.output.square().mean() + 0.01 * result.aux_loss).backward()

    times = {"dense_s": timed(dense_step, args.steps), "moe_1proc_s": timed(moe_step, args.steps)}
    # The same on one thread: separates the expert-parallel gain from thread scaling.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times["dense_1thread_s"] = timed(dense_step, args.steps)
    times["moe_1proc_1thread_s"] = timed(moe_step, args.steps)
    torch.set_num_threads(threads)
    return times


def ep_rank(args: argparse.Namespace, out: str) -> None:
    """One expert-parallel rank (module level: spawned by launch_local)."""
    ctx = init_distributed("cpu")
    try:
        torch.manual_seed(0)
        per_rank = args.experts // ctx.world_size
        experts = nn.ModuleList(ffn(args.width, args.ffn) for _ in range(per_rank))
        config = RoutingConfig(args.experts, args.top_k, 1.25)
        layer = ExpertParallelMoE(nn.Linear(args.width, args.experts), experts, config, args.width)
        x = torch.randn(args.tokens // ctx.world_size, args.width)

        def step() -> None:
            layer.zero_grad()
            result = layer(x)
            (result.output.square().mean() + 0.01 * result.aux_loss).backward()
            sync_replicated_grads(layer.gate)
            dist.barrier()

        seconds = timed(step, args.steps)
        if ctx.is_main:
            Path(out).write_text(json.dumps({"moe_ep2_s": seconds}))
    finally:
        shutdown(ctx)


def machine(threads: int) -> dict[str, Any]:
    caps = torch.cpu.get_capabilities()
    return {
        "device": "cpu",
        "cpu_cores": os.cpu_count(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "bf16": bool(caps.get("avx512_bf16") or caps.get("amx_bf16")),
        "threads_total": threads,
        "precision": "float32",
        "torch": torch.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--ffn", type=int, default=512)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    threads = min(2, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    info = machine(threads)
    print(f"CPU ISA {info['isa']} bf16={info['bf16']}, {threads} threads in total, float32")
    times = one_process(args)
    with tempfile.TemporaryDirectory() as tmp:
        launch_local(ep_rank, 2, (args, str(Path(tmp) / "ep.json")))
        times |= json.loads((Path(tmp) / "ep.json").read_text())
    rates = {k.replace("_s", "_tokens_per_s"): args.tokens / v for k, v in times.items()}
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    report = {"benchmark": "bench_moe", "machine": info, "settings": vars(args) | {"out": None}}
    report |= {"seconds_per_step": times, "tokens_per_s": rates, "gpu": "not run: no GPU lent"}
    path = args.out / f"bench_moe-cpu-{stamp}.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    for name, rate in rates.items():
        print(f"{name}: {rate:,.0f}")
    print(f"wrote {path}")
    # Baselines: the faster of each one-process run (on a loaded 2-core machine, two threads
    # can be slower than one), so the expert-parallel ratio is not flattered.
    dense = max(rates["dense_tokens_per_s"], rates["dense_1thread_tokens_per_s"])
    one = max(rates["moe_1proc_tokens_per_s"], rates["moe_1proc_1thread_tokens_per_s"])
    two = rates["moe_ep2_tokens_per_s"]
    print(f"moe_1proc_over_dense_tokens_per_s: {one / dense:.3f}")
    print(f"moe_ep2_over_moe_1proc_tokens_per_s: {two / one:.3f}")
    print(f"moe_ep2_over_dense_tokens_per_s: {two / dense:.3f}")


if __name__ == "__main__":
    main()
