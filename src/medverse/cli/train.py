"""``medverse train``: train a segmentation network on an MSD dataset (one or several processes)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--fold", type=int, metavar="K", help="validation fold (default 0)")
    add("--folds", type=int, metavar="N", help="number of folds (default 5)")
    add("--epochs", type=int, metavar="N", help="epochs (default 100)")
    add("--iters-per-epoch", type=int, metavar="N", help="optimiser steps per epoch (default 100)")
    add("--batch-size", type=int, metavar="N", help="patches per step and process (default 2)")
    add("--val-every", type=int, metavar="N", help="validate every N epochs (default 1)")
    add("--seed", type=int, help="seed of split, sampling, augmentation, weights (default 0)")
    add(
        "--time-limit",
        type=float,
        metavar="MIN",
        help="stop after MIN minutes (the unfinished epoch is dropped; --resume goes on)",
    )
    add("--preset", help="model preset (default: dynunet); see the registry")
    add("--plan", type=Path, metavar="PLAN_JSON", help="use this plan instead of planning")
    add("--patch-size", type=int, nargs=3, metavar=("I", "J", "K"), help="override the patch")
    add(
        "--init-weights",
        type=Path,
        metavar="CKPT",
        help="start from this medverse checkpoint (fine-tuning; its plan is used)",
    )
    add("--optimizer", choices=("adamw", "sgd"), help="adamw 3e-4 (default) or sgd 1e-2 Nesterov")
    add("--lr", type=float, help="initial learning rate (default: the optimiser's)")
    add("--weight-decay", type=float, help="weight decay (default 3e-5)")
    add("--foreground-fraction", type=float, metavar="F", help="patches centred on foreground")
    add("--overlap", type=float, metavar="F", help="validation sliding-window overlap (0.5)")
    add("--device", choices=("auto", "cpu", "cuda"), help="default auto (CUDA when present)")
    add("--no-amp", dest="amp", action="store_false", default=None, help="float32 on CUDA too")
    add(
        "--cpu-bf16",
        action="store_true",
        default=None,
        help="bf16 autocast on a CPU with native bf16 (AVX512-BF16/AMX): several times faster",
    )
    add("--gpus", type=int, metavar="N", help="train on N GPUs of this machine (DDP, NCCL)")
    add("--processes", type=int, metavar="N", help="N processes on this machine (gloo on CPU)")
    add(
        "--spatial-parallel",
        type=int,
        metavar="N",
        help="split each patch over N processes along its longest axis (halo exchange at every "
        "layer; about 1/N of the activations each) for patches too large for one device; with "
        "--processes/--gpus M (a multiple of N), M/N replicas train data-parallel (DDP); "
        "default processes: N",
    )
    add("--num-workers", type=int, metavar="N", help="data-loader worker processes")
    add("--cache", choices=("ram", "device"), help="keep cases in RAM (default) or on the GPU")
    add("--deterministic", action="store_true", default=None, help="deterministic kernels")
    add("--resume", action="store_true", default=None, help="continue the run in --out")
    add("--no-progress", dest="progress", action="store_false", default=None, help="no bars")


def register(subparsers: Any) -> None:
    """Add the ``train`` command."""
    parser = subparsers.add_parser(
        "train",
        help="train a segmentation model on an MSD dataset",
        description=(
            "Train on an MSD dataset folder (dataset.json, imagesTr, labelsTr). Every case is "
            "checked first. The run folder gets config.json, plan.json, split.json, "
            "metrics.csv, curves.png, checkpoint_last.pt, checkpoint_best.pt and "
            "resume_state.pt (exact resume with --resume)."
        ),
    )
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="MSD dataset folder")
    parser.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="run folder")
    _options(parser)
    parser.set_defaults(func=run)


_FIELDS = {
    "fold": "fold",
    "folds": "n_folds",
    "epochs": "epochs",
    "iters_per_epoch": "iters_per_epoch",
    "batch_size": "batch_size",
    "val_every": "val_every",
    "seed": "seed",
    "time_limit": "time_limit_min",
    "preset": "preset",
    "plan": "plan_path",
    "patch_size": "patch_size",
    "init_weights": "init_weights",
    "optimizer": "optimizer",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "foreground_fraction": "foreground_fraction",
    "overlap": "overlap",
    "device": "device",
    "amp": "amp",
    "cpu_bf16": "cpu_bf16",
    "processes": "processes",
    "spatial_parallel": "spatial_parallel",
    "num_workers": "num_workers",
    "cache": "cache",
    "deterministic": "deterministic",
    "resume": "resume",
    "progress": "progress",
}


def config_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Map the given flags (those not left out) to `TrainConfig` fields."""
    from medverse.core.errors import ConfigError

    fields = {_FIELDS[k]: v for k, v in vars(args).items() if k in _FIELDS and v is not None}
    if args.gpus is not None:
        if args.processes is not None:
            raise ConfigError("give --gpus (GPUs) or --processes (CPU processes), not both")
        fields.update(device="cuda", processes=args.gpus)
    if args.spatial_parallel is not None and "processes" not in fields:
        fields["processes"] = args.spatial_parallel  # one replica
    return fields


def run(args: argparse.Namespace) -> int:
    """Train and print where the run stands."""
    from pydantic import ValidationError

    from medverse.core.errors import ConfigError
    from medverse.parallel.ddp import env_rank
    from medverse.preprocessing.fingerprint import first_error
    from medverse.training.api import train
    from medverse.training.config import TrainConfig

    try:
        config = TrainConfig(**config_fields(args))
    except ValidationError as error:
        raise ConfigError(f"invalid option ({first_error(error)})") from None
    result = train(args.dataset, args.out, config)
    if env_rank() != 0:  # under torchrun every rank returns here; one prints
        return 0
    stop = " (stopped by the time limit)" if result.stopped_by_time_limit else ""
    print(f"epochs completed: {result.epochs_completed}{stop}")
    if result.best_dice is not None:
        print(f"best validation Dice: {result.best_dice:.4f} (epoch {result.best_epoch})")
        print(f"best checkpoint: {result.best_checkpoint}")
    print(f"last checkpoint: {result.last_checkpoint}")
    print(f"metrics: {result.metrics_csv}")
    return 0
