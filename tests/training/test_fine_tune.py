"""Fine-tuning: ``init_weights`` starts a run from a checkpoint's weights and plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medverse.core.errors import ConfigError, ModelError
from medverse.models.checkpoint import load_checkpoint, save_checkpoint
from medverse.preprocessing.plan import Plan
from medverse.training.api import train
from medverse.training.config import TrainConfig, TrainResult
from tests.training.conftest import tiny_options


def _parameters(checkpoint: Path) -> dict[str, torch.Tensor]:
    network = load_checkpoint(checkpoint).network
    return {name: p.detach().clone() for name, p in network.named_parameters()}


def test_a_fine_tuning_run_starts_from_the_given_weights_and_plan(
    tiny_run: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:
    source = tiny_run.last_checkpoint
    options = tiny_options(epochs=1, iters_per_epoch=1, lr=1e-12, preset=None, patch_size=None)
    tuned = train(tiny_dataset, tmp_path / "tuned", TrainConfig(init_weights=source, **options))
    fresh_options = tiny_options(epochs=1, iters_per_epoch=1, lr=1e-12)
    fresh = train(tiny_dataset, tmp_path / "fresh", TrainConfig(**fresh_options))

    start, after = _parameters(source), _parameters(tuned.last_checkpoint)
    assert after.keys() == start.keys()
    assert all(torch.allclose(after[k], start[k], atol=1e-6) for k in start)  # lr ~ 0: kept
    scratch = _parameters(fresh.last_checkpoint)
    assert any(not torch.allclose(scratch[k], start[k], atol=1e-3) for k in start)
    assert Plan.load(tuned.run_dir / "plan.json") == load_checkpoint(source).plan


def test_unusable_weights_fail_before_the_run_folder_is_made(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match=r"weights\.pt"):
        config = TrainConfig(init_weights=garbage, **tiny_options(preset=None))
        train(tiny_dataset, tmp_path / "run", config)
    assert not (tmp_path / "run").exists()


def test_weights_for_other_labels_are_refused(
    tiny_run: TrainResult, tiny_dataset: Path, tmp_path: Path
) -> None:
    loaded = load_checkpoint(tiny_run.last_checkpoint)
    other = loaded.plan.model_copy(update={"labels": {1: "Liver"}})
    path = save_checkpoint(
        tmp_path / "liver.pt", loaded.network, other, preset=loaded.preset, labels={1: "Liver"}
    )
    with pytest.raises(ConfigError, match=r"liver\.pt"):
        config = TrainConfig(init_weights=path, **tiny_options(preset=None))
        train(tiny_dataset, tmp_path / "run", config)
    assert not (tmp_path / "run").exists()
