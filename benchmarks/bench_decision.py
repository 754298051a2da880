"""Cross-site decision support: MoE vs logistic regression, gradient boosting, equal-size MLP.

Heart disease (UCI, four hospitals). Main split: train on Cleveland + Hungarian, test on
Switzerland + VA Long Beach; then leave-one-site-out. Every model, and its Platt calibration
(fitted on out-of-fold logits of the training sites), sees only the training sites; the
hyper-parameters were fixed beforehand by Cleveland <-> Hungarian validation (FitConfig).
Prints AUROC / AUPRC with 95 % stratified bootstrap CIs, ECE before and after calibration and
the Brier score, writes a reliability diagram PNG and a results JSON into benchmarks/results/.
The last two lines are ``moe_auroc_cross_site: X`` and ``best_baseline_auroc_cross_site: X``.

    .venv/bin/python benchmarks/bench_decision.py [--bootstrap 1000] [--no-loso]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from medverse.decision.calibration import plot_reliability
from medverse.decision.candidates import BASELINES, ModelKind
from medverse.decision.data import load_heart_disease
from medverse.decision.evaluation import (
    EvalConfig,
    SplitResult,
    evaluate_split,
    leave_one_site_out,
    paired_auroc_difference,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRAIN, TEST = ("cleveland", "hungarian"), ("switzerland", "va")


def machine() -> dict[str, Any]:
    caps = torch.cpu.get_capabilities()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "avx512": bool(caps.get("avx512")),
        "bf16": bool(caps.get("avx512_bf16") or caps.get("amx_bf16")),
        "torch_threads": torch.get_num_threads(),
        "precision": "float32",
        "torch": torch.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def print_split(split: SplitResult) -> None:
    print(
        f"\ntrain {'+'.join(split.train_sites)} -> test {'+'.join(split.test_sites)} "
        f"({len(split.labels)} patients, prevalence {split.labels.mean():.2f})"
    )
    print(f"{'model':<22}{'AUROC [95% CI]':<26}{'AUPRC [95% CI]':<26}ECE raw  ECE cal  Brier")
    for kind, s in split.scores.items():
        print(
            f"{kind!s:<22}{s.auroc.text():<26}{s.auprc.text():<26}"
            f"{s.ece_raw:<9.3f}{s.ece:<9.3f}{s.brier:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--no-loso", action="store_true", help="skip leave-one-site-out")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny networks: threads only add overhead
    info = machine()
    print(f"CPU {info['cpu']} ISA {info['isa']} bf16={info['bf16']}, 1 thread, float32")
    table = load_heart_disease(args.data)
    config = EvalConfig(bootstrap=args.bootstrap)
    started = time.perf_counter()

    def progress(kind: ModelKind) -> None:
        print(f"  fitting {kind} ... ({time.perf_counter() - started:.0f} s)", flush=True)

    main_split = evaluate_split(table, TRAIN, TEST, config=config, on_model=progress)
    loso = [] if args.no_loso else leave_one_site_out(table, config=config, on_model=progress)
    best = main_split.best(BASELINES)
    moe = main_split.scores[ModelKind.MOE]
    difference = paired_auroc_difference(main_split, ModelKind.MOE, best.kind, args.bootstrap)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    png = plot_reliability(
        {str(k): (s.calibrated, main_split.labels) for k, s in main_split.scores.items()},
        args.out / f"bench_decision-reliability-cpu-{stamp}.png",
        "Switzerland + VA, calibrated on Cleveland + Hungarian",
    )
    report = {
        "benchmark": "bench_decision",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "config": {"bootstrap": args.bootstrap, "folds": config.folds},
        "fit": vars(config.fit),
        "moe": vars(config.moe),
        "cross_site": main_split.to_dict(),
        "moe_minus_best_baseline_auroc": vars(difference),
        "best_baseline": str(best.kind),
        "leave_one_site_out": [s.to_dict() for s in loso],
        "reliability_png": png.name,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = args.out / f"bench_decision-cpu-{stamp}.json"
    path.write_text(json.dumps(report, indent=1))
    for split in [main_split, *loso]:
        print_split(split)
    print(f"\nMoE - {best.kind} AUROC (paired bootstrap): {difference.text()}")
    print(f"ratio MoE / best baseline AUROC: {moe.auroc.value / best.auroc.value:.3f}")
    print(f"wrote {path} and {png}")
    print(f"moe_auroc_cross_site: {moe.auroc.value:.4f}")
    print(f"best_baseline_auroc_cross_site: {best.auroc.value:.4f}")


if __name__ == "__main__":
    main()
