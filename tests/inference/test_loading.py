"""load_model: a checkpoint file or a bundle folder; anything else fails naming the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from medverse.core.errors import ModelError
from medverse.inference.loading import load_model
from medverse.models.checkpoint import LoadedModel
from tests.inference.helpers import hippo_plan, untrained_checkpoint


def test_a_checkpoint_file_loads_as_itself(tmp_path: Path) -> None:
    path = untrained_checkpoint(hippo_plan(), tmp_path / "model.pt")
    model = load_model(path)
    assert type(model) is LoadedModel and model.plan == hippo_plan()
    assert model.title == "medverse unet_small"


def test_a_missing_path_says_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="checkpoint file not found") as e:
        load_model(tmp_path / "nothing.pt")
    assert "nothing.pt" in e.value.one_line()
    with pytest.raises(ModelError, match="bundle folder not found"):
        load_model(tmp_path / "nowhere")


def test_a_folder_is_read_as_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="bundle has no inference config"):
        load_model(tmp_path)  # an empty folder: the bundle's missing files are named
