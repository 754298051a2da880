"""Fixtures for training tests: a 6-case copy of the real MSD hippocampus data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from medverse.training.api import train
from medverse.training.config import TrainConfig, TrainResult
from tests.conftest import HIPPOCAMPUS

N_CASES = 6


def copy_msd_subset(target: Path, n_cases: int = N_CASES) -> Path:
    """Copy the first ``n_cases`` hippocampus cases and a trimmed dataset.json to ``target``."""
    meta = json.loads((HIPPOCAMPUS / "dataset.json").read_text())
    entries = meta["training"][:n_cases]
    for folder in ("imagesTr", "labelsTr"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for entry in entries:
        for key in ("image", "label"):
            shutil.copyfile(HIPPOCAMPUS / entry[key], target / entry[key])
    meta.update(training=entries, numTraining=len(entries))
    (target / "dataset.json").write_text(json.dumps(meta, indent=1))
    return target


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real hippocampus cases in MSD layout (read-only by convention)."""
    return copy_msd_subset(tmp_path_factory.mktemp("msd6"))


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A finished two-epoch run on `tiny_dataset` (treat as read-only)."""
    run_dir = tmp_path_factory.mktemp("run") / "fold0"
    return train(tiny_dataset, run_dir, TrainConfig(**tiny_options()))


def tiny_options(**changes: Any) -> dict[str, Any]:
    """TrainConfig fields for a run of seconds on two CPU cores."""
    options: dict[str, Any] = dict(
        preset="unet_small",
        patch_size=(16, 16, 16),
        epochs=2,
        iters_per_epoch=3,
        batch_size=2,
        n_folds=3,
        overlap=0.0,
        device="cpu",
        progress=False,
    )
    options.update(changes)
    return options


def tiny_cli_flags(**changes: Any) -> list[str]:
    """The same tiny run as `medverse train` flags."""
    options = tiny_options(**changes)
    flags = [
        "--preset", options["preset"],
        "--patch-size", *[str(p) for p in options["patch_size"]],
        "--epochs", str(options["epochs"]),
        "--iters-per-epoch", str(options["iters_per_epoch"]),
        "--batch-size", str(options["batch_size"]),
        "--folds", str(options["n_folds"]),
        "--overlap", str(options["overlap"]),
        "--device", options["device"],
        "--no-progress",
    ]  # fmt: skip
    return flags
