from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medverse.core.errors import ConfigError, InputError
from medverse.models.checkpoint import load_checkpoint
from medverse.training.api import train
from medverse.training.config import TrainConfig, TrainResult
from medverse.training.history import read_metrics
from medverse.training.split import load_split
from tests.training.conftest import tiny_options

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def finished_run(tiny_run: TrainResult) -> TrainResult:
    return tiny_run


def test_a_run_leaves_checkpoints_metrics_and_curves(finished_run: TrainResult) -> None:
    result = finished_run
    run_dir = result.run_dir
    assert result.epochs_completed == 2 and not result.stopped_by_time_limit
    rows = read_metrics(result.metrics_csv)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["val_dice"]) <= 1.0 for r in rows)
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # poly decay
    assert result.best_dice == pytest.approx(max(float(r["val_dice"]) for r in rows), abs=1e-8)
    assert result.curves_png.read_bytes().startswith(PNG_MAGIC)
    for name in ("config.json", "plan.json", "split.json", "resume_state.pt"):
        assert (run_dir / name).is_file(), name
    split = load_split(run_dir / "split.json")
    assert len(split.train) == 4 and len(split.validation) == 2


def test_the_checkpoints_load_as_medverse_models(finished_run: TrainResult) -> None:
    assert finished_run.best_checkpoint is not None
    for path in (finished_run.last_checkpoint, finished_run.best_checkpoint):
        model = load_checkpoint(path)
        assert model.preset == "unet_small"
        assert model.labels == {1: "Anterior", 2: "Posterior"}
        assert model.plan.patch_size == (16, 16, 16)
        logits = model.network(torch.zeros(1, 1, 16, 16, 16))
        assert logits.shape == (1, 3, 16, 16, 16)
    last = load_checkpoint(finished_run.last_checkpoint)
    assert last.meta["extra"]["epoch"] == 2


def test_an_existing_run_is_not_overwritten_without_resume(
    finished_run: TrainResult, tiny_dataset: Path
) -> None:
    before = finished_run.metrics_csv.read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_dataset, finished_run.run_dir, TrainConfig(**tiny_options()))
    assert finished_run.metrics_csv.read_bytes() == before


def test_resume_needs_a_saved_state(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothing to resume"):
        train(tiny_dataset, tmp_path / "new", TrainConfig(**tiny_options(resume=True)))
    assert not (tmp_path / "new").exists()


def test_resuming_a_finished_run_trains_nothing_more(
    finished_run: TrainResult, tiny_dataset: Path
) -> None:
    weights = finished_run.last_checkpoint.read_bytes()
    again = train(tiny_dataset, finished_run.run_dir, TrainConfig(**tiny_options(resume=True)))
    assert again.epochs_completed == 2
    assert [r["epoch"] for r in read_metrics(again.metrics_csv)] == ["1", "2"]
    assert finished_run.last_checkpoint.read_bytes() == weights


def test_the_time_limit_stops_cleanly_without_a_partial_epoch(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    options = tiny_options(epochs=3, time_limit_min=1e-6)
    stopped = train(tiny_dataset, tmp_path / "run", TrainConfig(**options))
    assert stopped.stopped_by_time_limit and stopped.epochs_completed == 0
    assert not (tmp_path / "run" / "resume_state.pt").exists()
    assert read_metrics(stopped.metrics_csv) == []
