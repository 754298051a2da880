"""DDP on the CPU: two gloo processes train one run; rank 0 alone writes; metrics are global."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medverse.models.checkpoint import load_checkpoint
from medverse.training.api import train
from medverse.training.checkpointing import load_resume_state
from medverse.training.config import TrainConfig
from medverse.training.evaluation import evaluate
from medverse.training.history import read_metrics
from tests.training.conftest import tiny_options

pytestmark = pytest.mark.dist


def test_two_gloo_processes_train_and_report_the_global_validation_dice(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "ddp"
    result = train(tiny_dataset, run_dir, TrainConfig(**tiny_options(processes=2)))

    assert result.epochs_completed == 2
    rows = read_metrics(result.metrics_csv)
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # one writer: no duplicated rows
    assert load_resume_state(run_dir).world_size == 2
    assert len(load_resume_state(run_dir).rng) == 2  # each rank's RNG saved
    model = load_checkpoint(result.last_checkpoint)
    assert model.preset == "unet_small"

    # The two ranks each validated one of the two validation cases; the all-reduced Dice
    # must equal a one-process evaluation of the same weights on the same cases. The ranks
    # ran one CPU thread each, and float32 convolutions round differently with another
    # thread count, so the evaluation uses one thread too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = evaluate(
            result.last_checkpoint,
            tiny_dataset / "dataset.json",
            tmp_path / "eval",
            cases=run_dir / "split.json",
            overlap=0.0,
            device="cpu",
        )
    finally:
        torch.set_num_threads(threads)
    assert len(report.cases) == 2
    assert report.dice_mean == pytest.approx(float(rows[-1]["val_dice"]), abs=1e-6)
