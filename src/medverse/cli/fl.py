"""``medverse fl``: federated training across hospitals with Flower (``fl simulate``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_HEART = Path("../shared/data/uci_heart_disease")
DEFAULT_HIPPOCAMPUS = Path("../shared/data/msd_task04_hippocampus")


def register(subparsers: Any) -> None:
    """Add the ``fl`` command and its ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "fl", help="federated training across sites (Flower)", description=__doc__
    )
    actions = parser.add_subparsers(dest="fl_command", metavar="ACTION", required=True)
    sim = actions.add_parser(
        "simulate",
        help="simulate N sites on this machine (Flower)",
        description=(
            "heart: the heart-disease classifier federated over the UCI hospitals (Cleveland, "
            "Hungarian, Switzerland, VA), each with its own held-out part (Flower simulation "
            "engine, Ray). hippocampus: the MSD hippocampus UNet over 4 sites made from the "
            "fold-0 training cases (--split iid or by-scanner), Dice on the untouched "
            "validation cases (Flower apps in this process). Writes metrics.csv (per round, per "
            "site and global), curves.png, privacy.json and global_model.pt into --out."
        ),
    )
    sim.add_argument("--task", choices=["heart", "hippocampus"], default="heart")
    sim.add_argument("--dataset", type=Path, default=None, help="data folder (task default)")
    sim.add_argument("--sites", type=int, default=4, help="number of sites (2-4)")
    sim.add_argument("--rounds", type=int, default=None, help="rounds (heart 5, hippocampus 4)")
    sim.add_argument("--strategy", choices=["fedavg", "fedprox"], default="fedavg")
    sim.add_argument("--mu", type=float, default=None, help="FedProx weight (0.1 / 0.01)")
    sim.add_argument("--epochs", type=int, default=2, help="heart: local epochs per round")
    sim.add_argument("--lr", type=float, default=None, help="local rate (0.01 Adam / 2e-3 AdamW)")
    sim.add_argument("--split", choices=["iid", "by-scanner"], default="iid", help="hippocampus")
    sim.add_argument("--local-steps", type=int, default=15, help="hippocampus: steps per round")
    sim.add_argument(
        "--uplink",
        choices=["dense", "secagg", "topk-secagg"],
        default="dense",
        help="hippocampus: dense weights, SecAgg+, or Top-K values under SecAgg+",
    )
    sim.add_argument("--topk-fraction", type=float, default=0.01, help="share of coordinates")
    sim.add_argument(
        "--topk-rule",
        choices=["age-rate", "last-aggregate"],
        default="age-rate",
        help="how the shared Top-K indices are picked (public data only; see README)",
    )
    sim.add_argument(
        "--residual-decay",
        type=float,
        default=0.95,
        help="Top-K error feedback: factor on each site's unsent residual per round (1: keep all)",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--dp-noise", type=float, default=0.0, help="central DP noise multiplier")
    sim.add_argument("--dp-clip", type=float, default=1.0, help="DP clipping norm per site update")
    sim.add_argument("--out", type=Path, required=True, help="folder to write into")
    sim.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Run the simulation and print the last round's per-site and global scores."""
    if args.task == "hippocampus":
        return run_hippocampus(args)
    from medverse.federated.settings import FlSettings, Strategy
    from medverse.federated.simulate import simulate

    settings = FlSettings(
        data_root=args.dataset or DEFAULT_HEART,
        out_dir=args.out,
        sites=args.sites,
        rounds=args.rounds or 5,
        strategy=Strategy(args.strategy),
        mu=0.1 if args.mu is None else args.mu,
        epochs=args.epochs,
        lr=args.lr or 0.01,
        seed=args.seed,
        dp_noise=args.dp_noise,
        dp_clip=args.dp_clip,
    )
    rows = simulate(settings)
    last = [r for r in rows if int(r["round"]) == settings.rounds]
    for row in last:
        print(f"round {row['round']} {row['site']}: AUROC {float(row['auroc']):.4f}")
    privacy = json.loads((args.out / "privacy.json").read_text())
    print(
        f"DP: noise {settings.dp_noise}, epsilon {privacy['epsilon']} at delta {settings.dp_delta}"
    )
    print(f"wrote privacy.json, metrics.csv, curves.png and global_model.pt into {args.out}")
    return 0


def run_hippocampus(args: argparse.Namespace) -> int:
    """Run the federated hippocampus task and print its Dice, traffic and privacy."""
    from medverse.federated.hippo_data import SiteSplit
    from medverse.federated.hippo_run import run_federated
    from medverse.federated.hippo_settings import HippoSettings, TopKRule, Uplink
    from medverse.federated.settings import Strategy

    settings = HippoSettings(
        data_root=args.dataset or DEFAULT_HIPPOCAMPUS,
        out_dir=args.out,
        sites=args.sites,
        split=SiteSplit(args.split),
        rounds=args.rounds or 4,
        local_steps=args.local_steps,
        lr=args.lr or 2e-3,
        strategy=Strategy(args.strategy),
        mu=0.01 if args.mu is None else args.mu,
        seed=args.seed,
        uplink=Uplink(args.uplink),
        topk_fraction=args.topk_fraction,
        topk_rule=TopKRule(args.topk_rule),
        residual_decay=args.residual_decay,
        dp_noise=args.dp_noise,
        dp_clip=args.dp_clip,
    )
    result = run_federated(settings, f"{args.split}-{args.strategy}-{args.uplink}")
    print(
        f"round {settings.rounds} global: Dice {result.dice:.4f} on the validation cases "
        f"({settings.total_steps} local steps in all)"
    )
    print(f"uplink: {result.uplink_bytes_per_site_round:,.0f} bytes per site per round")
    print(f"DP: noise {settings.dp_noise}, epsilon {result.epsilon} at delta {settings.dp_delta}")
    print(f"wrote privacy.json, metrics.csv, curves.png and global_model.pt into {args.out}")
    return 0
