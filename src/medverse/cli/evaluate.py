"""``medverse evaluate``: score a checkpoint on MSD cases; per-case CSV, summary.json, box plot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on labelled cases (Dice, HD95, surface Dice)",
        description=(
            "Predict every case of an MSD dataset.json (or those listed with --cases/--split) "
            "and compare with its labels. Writes metrics_per_case.csv, summary.json and "
            "dice_boxplot.png into --out and prints the mean Dice."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="model checkpoint (.pt)")
    parser.add_argument(
        "--data", type=Path, required=True, metavar="DATASET_JSON", help="MSD dataset.json"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--cases", type=Path, metavar="JSON", help="JSON list of case names")
    which.add_argument(
        "--split", type=Path, metavar="SPLIT_JSON", help="a run's split.json (validation cases)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="mirroring test-time augmentation, as segment --tta: averages 8 flips, 8x the compute",
    )
    parser.add_argument(
        "--tolerance-mm", type=float, default=1.0, help="surface Dice tolerance (default 1 mm)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the mean Dice (overall and per label)."""
    from medverse.training.evaluation import evaluate

    result = evaluate(
        args.model,
        args.data,
        args.out,
        cases=args.cases or args.split,
        device=args.device,
        overlap=args.overlap,
        mirror_tta=args.tta,
        tolerance_mm=args.tolerance_mm,
    )
    for name, means in result.per_label.items():
        hd95 = means.get("hd95_mean")
        hd_text = f", HD95 {hd95:.2f} mm" if isinstance(hd95, float) else ""
        print(f"{name}: Dice {means['dice_mean']:.4f}{hd_text}")
    print(f"mean Dice: {result.dice_mean:.4f} over {len(result.cases)} cases")
    print(f"wrote {result.cases_csv}, {result.summary_json}, {result.boxplot_png}")
    return 0
