"""Fixtures for decision tests: the real UCI tables and one quickly trained model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medverse.decision.api import train_decision_model
from medverse.decision.data import Table, load_heart_disease
from medverse.decision.model_file import DecisionModel
from medverse.decision.training import FitConfig
from tests.conftest import SHARED_DATA

# A few epochs are enough for the behaviour these tests check; the benchmark trains fully.
QUICK = FitConfig(epochs=6)


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """These networks are tiny: one thread avoids contention on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def heart(shared_data: Path) -> Table:
    """All 920 heart-disease patients from the four hospitals."""
    return load_heart_disease(shared_data)


@pytest.fixture(scope="session")
def quick_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A heart-disease MoE trained briefly on Cleveland + Hungarian, written to a tmp file."""
    path = tmp_path_factory.mktemp("decision") / "heart_disease.pt"
    train_decision_model(
        "heart_disease", SHARED_DATA, path, ("cleveland", "hungarian"), QUICK, folds=2
    )
    return path


@pytest.fixture(scope="session")
def quick_model(quick_model_path: Path) -> DecisionModel:
    """The quick model, loaded."""
    from medverse.decision.model_file import load_decision_model

    return load_decision_model(quick_model_path)
