"""``medverse decide``: decision support from the mixture-of-experts models (predict, train)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``decide`` command with its ``predict`` and ``train`` actions."""
    parser = subparsers.add_parser(
        "decide",
        help="decision support: calibrated, explained risk from a mixture of experts",
        description="Predict one patient's risk with a decision model, or train one.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    predict = actions.add_parser(
        "predict",
        help="risk, calibrated probability, chosen expert, gate weights and top features",
        description="Values are in the units of the model card; null or absent = not recorded.",
    )
    predict.add_argument("--model", required=True, help="shipped name (heart_disease) or a .pt")
    predict.add_argument("--input", type=Path, required=True, help="patient JSON object")
    predict.add_argument("--report", type=Path, help="write a Markdown report here")
    predict.add_argument("--json", type=Path, dest="json_out", help="write the decision as JSON")
    predict.set_defaults(func=run_predict)
    train = actions.add_parser("train", help="train, calibrate and write a decision model")
    train.add_argument("--task", required=True, choices=("heart_disease", "heart_failure"))
    train.add_argument("--data", type=Path, required=True, help="shared data folder")
    train.add_argument("--out", type=Path, required=True, help="model file to write (.pt)")
    train.add_argument(
        "--sites", help="comma-separated training sites (default: all sites of the task)"
    )
    train.add_argument(
        "--settings",
        type=Path,
        help="bench_decision results JSON whose chosen MoE settings to use (default: defaults)",
    )
    train.set_defaults(func=run_train)


def run_predict(args: argparse.Namespace) -> int:
    """Print the decision (and write the report / JSON when asked)."""
    from medverse.core.settings import load_settings
    from medverse.decision.api import decide, decision_report_markdown, read_patient
    from medverse.io.atomic import write_text_atomic

    decision = decide(args.model, read_patient(args.input), load_settings().models_dir)
    print(f"calibrated probability: {decision.probability:.3f} (model risk {decision.risk:.3f})")
    print(f"chosen expert: {decision.expert}")
    print("gate weights: " + ", ".join(f"{k}={v:.3f}" for k, v in decision.gate_weights.items()))
    top = ", ".join(f"{f.name} {f.attribution:+.3f}" for f in decision.top_features)
    print(f"top features: {top or 'none'}")
    if decision.missing:
        print(f"not recorded (learned defaults used): {', '.join(decision.missing)}")
    if args.report:
        write_text_atomic(args.report, decision_report_markdown(decision))
        print(f"wrote {args.report}")
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(decision.to_dict(), indent=1))
        print(f"wrote {args.json_out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Train and print the model card's headline."""
    from medverse.decision.api import settings_from_results, train_decision_model

    sites = [s.strip() for s in args.sites.split(",")] if args.sites else None
    fit, moe = settings_from_results(args.settings) if args.settings else (None, None)
    model = train_decision_model(args.task, args.data, args.out, sites, fit, moe)
    card = model.card
    print(
        f"trained {model.name} on {', '.join(card['training_sites'])} "
        f"({card['training_patients']} patients): out-of-fold AUROC {card['out_of_fold_auroc']:.3f}"
    )
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0
