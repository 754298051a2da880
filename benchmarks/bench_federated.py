"""Federated hippocampus (pooled vs FedAvg vs SecAgg+ vs Top-K 1% under SecAgg+, by scanner, DP).

Every run trains ``unet_small`` on the MSD Task04 training cases of fold 0 (4 sites) with the
same budget: ``rounds * local_steps`` optimiser steps along the model's path; each site takes
that many local steps of ``batch`` patches (a fresh AdamW each round). Two pooled baselines
take the same number of steps on all cases together (one AdamW, validated after each
``local_steps`` steps): ``iid-pooled`` with ``batch`` patches a step (the same steps of the same
size as each site; the sites see 4x the patches, in parallel) and ``iid-pooled-equal-patches``
with ``sites * batch`` (the same patches in all). The Top-K run also runs at 1.5x the rounds
with 2/3 of the local steps (the same steps; its whole-run uplink still >= 50x below dense).
Dice is scored on the untouched fold-0 validation cases. The
Flower apps run in this process (``medverse.federated.inprocess``: Ray's start-up outweighs
these rounds on 2 cores); uplink bytes are the serialised reply messages of every stage a site
answers (SecAgg+ key exchange included), per site per round. Float32, one torch thread per run,
``--jobs`` runs at a time. A second table: UCI heart AUROC per hospital for local-only,
federated (FedAvg, in-process Flower) and pooled training at equal epochs.

Per run: metrics.csv and curves.png under benchmarks/results/bench_federated-<date>/<run>/;
results JSON benchmarks/results/bench_federated[-quick]-cpu-<date>.json. The last three lines
are ``fedavg_over_pooled_dice``, ``secagg_minus_fedavg_dice`` and ``topk_uplink_reduction``
(dense float32 FedAvg bytes in the clear / Top-K 1 % SecAgg+ bytes, per site per round).

    .venv/bin/python benchmarks/bench_federated.py [--quick] [--jobs 2] [--only iid-pooled,...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from medverse.engine.cpu_isa import cpu_isa
from medverse.federated.hippo_data import SiteSplit
from medverse.federated.hippo_settings import HippoSettings, TopKRule, Uplink
from medverse.federated.settings import Strategy

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parent.parent / "shared" / "data"
DP_CLIP = 10.0
DP_NOISE = (0.001, 0.01, 0.1)
REQUIRED = ("iid-pooled", "iid-fedavg", "iid-fedavg-secagg", "iid-topk1-secagg")  # last lines


def plan_runs(base: HippoSettings) -> dict[str, HippoSettings]:
    """Every run of the benchmark, by name (out_dir filled in by the caller)."""
    scanner = replace(base, split=SiteSplit.BY_SCANNER)
    topk_rounds = max(2, 3 * base.rounds // 2)  # more, shorter rounds; uplink still < dense/50
    runs = {
        "iid-pooled": base,
        "iid-pooled-equal-patches": replace(base, pooled_batch=base.sites * base.batch_size),
        "iid-fedavg": base,
        "iid-fedavg-secagg": replace(base, uplink=Uplink.SECAGG),
        "iid-topk1-secagg": replace(base, uplink=Uplink.TOPK_SECAGG),
        "iid-topk1-secagg-1.5xrounds": replace(
            base,
            uplink=Uplink.TOPK_SECAGG,
            rounds=topk_rounds,
            local_steps=max(1, round(base.sequential_steps / topk_rounds)),
        ),
        "iid-topk1-secagg-last-aggregate": replace(
            base, uplink=Uplink.TOPK_SECAGG, topk_rule=TopKRule.LAST_AGGREGATE
        ),
        "scanner-pooled": scanner,
        "scanner-fedavg": scanner,
        "scanner-fedprox": replace(scanner, strategy=Strategy.FEDPROX),
    }
    for z in DP_NOISE:
        runs[f"iid-fedavg-dp{z:g}"] = replace(base, dp_noise=z, dp_clip=DP_CLIP)
    return runs


def run_one(name: str, settings: HippoSettings) -> dict[str, Any]:
    """Run one named configuration in this (worker) process; return its summary."""
    import torch

    from medverse.federated.hippo_run import run_federated, run_pooled

    torch.set_num_threads(1)
    run = run_pooled if "pooled" in name else run_federated
    return run(settings, name).summary()


def heart_table(data: Path, rounds: int, epochs: int) -> dict[str, dict[str, float]]:
    """AUROC per UCI hospital: local-only, federated (in-process Flower FedAvg) and pooled."""
    import torch

    from medverse.federated.app.client_app import build_client_app
    from medverse.federated.app.server_app import build_server_app
    from medverse.federated.heart_data import load_sites
    from medverse.federated.heart_task import TrainSettings, evaluate, make_model, train_local
    from medverse.federated.inprocess import run_in_process
    from medverse.federated.settings import FlSettings

    torch.set_num_threads(1)
    sites = load_sites(data, 4)
    budget = TrainSettings(epochs=rounds * epochs)
    table: dict[str, dict[str, float]] = {s.name: {} for s in sites}
    for site in sites:
        model = make_model()
        train_local(model, site.x_train, site.y_train, budget)
        table[site.name]["local"] = evaluate(model, site.x_test, site.y_test)["auroc"]
    pooled = make_model()
    x = np.concatenate([s.x_train for s in sites])
    y = np.concatenate([s.y_train for s in sites])
    train_local(pooled, x, y, budget)
    with tempfile.TemporaryDirectory() as tmp:
        settings = FlSettings(data, Path(tmp), sites=4, rounds=rounds, epochs=epochs)
        run_in_process(build_server_app(settings), build_client_app(settings), 4)
        state = torch.load(Path(tmp) / "global_model.pt", weights_only=True)["state_dict"]
    federated = make_model()
    federated.load_state_dict(state)
    for site in sites:
        table[site.name]["federated"] = evaluate(federated, site.x_test, site.y_test)["auroc"]
        table[site.name]["pooled"] = evaluate(pooled, site.x_test, site.y_test)["auroc"]
    return table


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _print_hippo(results: dict[str, dict[str, Any]], dense: float) -> None:
    print(f"{'run':28s} {'Dice':>7s} {'steps':>6s} {'uplink B/site/round':>20s} "
          f"{'vs dense':>9s} {'s/round':>8s} {'CPU s':>7s} {'epsilon':>10s}")  # fmt: skip
    for name, r in results.items():
        up = r["uplink_bytes_per_site_round"]
        ratio = f"{dense / up:8.1f}x" if up else "        -"
        eps = "-" if r["epsilon"] is None else f"{r['epsilon']:.3g}"
        print(f"{name:28s} {r['dice']:7.4f} {r['sequential_steps']:6d} {up:20,d} {ratio} "
              f"{r['seconds_per_round']:8.1f} {r['cpu_seconds']:7.1f} {eps:>10s}")  # fmt: skip


def main() -> None:
    """Run every configuration, print both tables and the ratios, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budget (< 15 min, 2 cores)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with the datasets")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--local-steps", type=int, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--tag", default="", help="suffix of the results' names (e.g. iid)")
    args = parser.parse_args()
    results_root: Path = args.results
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    day = datetime.now(UTC).strftime("%Y%m%d")
    heart_rounds = 2 if args.quick else 4  # the UCI table's own budget
    tag = f"-{args.tag}" if args.tag else ""
    runs_dir = results_root / f"bench_federated{'-quick' if args.quick else ''}-{day}{tag}"
    work = Path(tempfile.mkdtemp(prefix="bench-federated-"))
    base = HippoSettings(
        data_root=args.data / "msd_task04_hippocampus",
        out_dir=work,
        rounds=args.rounds or (2 if args.quick else 16),
        local_steps=args.local_steps or (8 if args.quick else 15),
        max_validation=12 if args.quick else None,
    )
    wanted = set(filter(None, args.only.split(","))) | set(REQUIRED)
    runs = {
        n: replace(s, out_dir=work / n)
        for n, s in plan_runs(base).items()
        if not args.only or n in wanted
    }
    load = os.getloadavg()
    print(f"CPU {_cpu_name()} ({cpu_isa()}), {os.cpu_count()} cores, float32, 1 thread per run, "
          f"{args.jobs} runs at a time; load average {load[0]:.1f} at start")  # fmt: skip
    print(f"budget: {base.rounds} rounds x {base.local_steps} local steps = "
          f"{base.sequential_steps} steps along the model's path; each of {base.sites} sites "
          f"batch {base.batch_size}; pooled: {base.sequential_steps} steps of batch "
          f"{base.batch_size} (iid-pooled) and {base.sites * base.batch_size} "
          "(iid-pooled-equal-patches)")  # fmt: skip
    tick = time.monotonic()
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters: one torch thread each
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=spawn) as pool:
        futures = {n: pool.submit(run_one, n, s) for n, s in runs.items()}
        heart = heart_table(args.data / "uci_heart_disease", heart_rounds, 2)
        results = {}
        for name, future in futures.items():
            results[name] = future.result()
            print(f"  done {name}: Dice {results[name]['dice']:.4f} "
                  f"({time.monotonic() - tick:.0f} s)", flush=True)  # fmt: skip
    runs_dir.mkdir(parents=True, exist_ok=True)
    for name in runs:
        (runs_dir / name).mkdir(exist_ok=True)
        for file in ("metrics.csv", "curves.png", "privacy.json"):
            shutil.copy2(work / name / file, runs_dir / name / file)
    shutil.rmtree(work, ignore_errors=True)
    dense = results["iid-fedavg"]["uplink_bytes_per_site_round"]
    _print_hippo(results, dense)
    print(f"\nUCI heart AUROC per hospital ({heart_rounds} rounds x 2 epochs; local and pooled: "
          "the same epochs)")  # fmt: skip
    print(f"{'site':12s} {'local':>7s} {'federated':>10s} {'pooled':>7s}")
    for site, row in heart.items():
        print(f"{site:12s} {row['local']:7.4f} {row['federated']:10.4f} {row['pooled']:7.4f}")
    secagg = results["iid-fedavg-secagg"]["uplink_bytes_per_site_round"]
    topk = results["iid-topk1-secagg"]["uplink_bytes_per_site_round"]
    ratios = {
        "fedavg_over_pooled_dice": results["iid-fedavg"]["dice"] / results["iid-pooled"]["dice"],
        "secagg_minus_fedavg_dice": results["iid-fedavg-secagg"]["dice"]
        - results["iid-fedavg"]["dice"],
        "topk_uplink_reduction": dense / topk,
    }
    topk_runs = {
        name: {
            "dice_minus_fedavg": results[name]["dice"] - results["iid-fedavg"]["dice"],
            "uplink_reduction_per_round": dense / results[name]["uplink_bytes_per_site_round"],
            "uplink_reduction_per_run": results["iid-fedavg"]["uplink_bytes_per_site_run"]
            / results[name]["uplink_bytes_per_site_run"],
        }
        for name in ("iid-topk1-secagg", "iid-topk1-secagg-1.5xrounds")
        if name in results
    }
    if "iid-pooled-equal-patches" in results:
        strict = results["iid-fedavg"]["dice"] / results["iid-pooled-equal-patches"]["dice"]
        print(f"fedavg over pooled at equal patches (pooled batch "
              f"{base.sites * base.batch_size}): {strict:.4f}")  # fmt: skip
        ratios_extra = {"fedavg_over_pooled_equal_patches_dice": strict}
    else:
        ratios_extra = {}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout.strip()
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": "cpu", "cpu": _cpu_name(), "isa": str(cpu_isa()), "threads_per_run": 1,
        "jobs": args.jobs, "precision": "float32", "load_average_start": load,
        "load_average_end": os.getloadavg(), "commit": commit,
        "budget": {"rounds": base.rounds, "sites": base.sites, "local_steps": base.local_steps,
                   "batch_size": base.batch_size, "total_steps": base.total_steps,
                   "sequential_steps": base.sequential_steps,
                   "pooled_batch": {"iid-pooled": base.batch_size,
                                    "iid-pooled-equal-patches": base.sites * base.batch_size},
                   "site_optimiser": str(base.site_optimiser)},
        "dp": {"clip": DP_CLIP, "noise": list(DP_NOISE), "delta": base.dp_delta},
        "hippocampus": results, "uci_heart_auroc": heart,
        "topk_reduction_vs_dense_secagg": secagg / topk, "topk": topk_runs,
        **ratios_extra, **ratios,
        "wall_seconds": time.monotonic() - tick,
    }  # fmt: skip
    name = f"bench_federated{'-quick' if args.quick else ''}{tag}-cpu-{day}.json"
    (results_root / name).write_text(json.dumps(doc, indent=2) + "\n")
    for run_name, row in topk_runs.items():
        print(f"{run_name}: Dice {row['dice_minus_fedavg']:+.4f} vs dense FedAvg; uplink "
              f"{row['uplink_reduction_per_round']:.1f}x fewer bytes per round, "
              f"{row['uplink_reduction_per_run']:.1f}x per run than dense float32")  # fmt: skip
    print(f"wrote {results_root / name} and per-run CSV/PNG under {runs_dir}")
    for key, value in ratios.items():
        print(f"{key}: {value:.4f}")


if __name__ == "__main__":
    main()
