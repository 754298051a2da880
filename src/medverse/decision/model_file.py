"""The decision model file: MoE weights, encoder, calibration and card in one torch file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medverse.core.errors import ModelError
from medverse.decision.calibration import PlattScaling
from medverse.decision.candidates import build_moe
from medverse.decision.encoding import Encoder
from medverse.decision.moe import MoEClassifier, MoEConfig
from medverse.decision.schema import TaskSchema, task_schema
from medverse.io.atomic import atomic_path

FORMAT = "medverse-decision/1"


@dataclass
class DecisionModel:
    """A trained, calibrated decision model.

    Attributes:
        schema: The task it answers.
        encoder: Column encoding fitted on its training patients.
        network: The mixture of experts (eval mode).
        calibration: Platt scaling fitted on out-of-fold training logits.
        card: Model card facts (training sites, patients, metrics, intended use).
    """

    schema: TaskSchema
    encoder: Encoder
    network: MoEClassifier
    calibration: PlattScaling
    card: dict[str, Any]

    @property
    def name(self) -> str:
        """The model's name (its card's, else the task's)."""
        return str(self.card.get("name", self.schema.name))


def save_decision_model(model: DecisionModel, path: Path) -> Path:
    """Write ``model`` to ``path`` atomically (plain tensors and dicts: safe to load)."""
    payload = {
        "format": FORMAT,
        "task": model.schema.name,
        "encoder": model.encoder.to_dict(),
        "moe": dataclasses.asdict(model.network.config),
        "state_dict": model.network.state_dict(),
        "calibration": dataclasses.asdict(model.calibration),
        "card": model.card,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_decision_model(path: Path) -> DecisionModel:
    """Load a model written by ``save_decision_model``.

    Raises:
        ModelError: Naming the file if it is missing, not a decision model, or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError("decision model file not found", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        raise ModelError(f"not a readable model file ({type(error).__name__})", path) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"not a medverse decision model (expected format {FORMAT})", path)
    try:
        schema = task_schema(payload["task"])
        encoder = Encoder.from_dict(schema, payload["encoder"])
        network = build_moe(encoder, MoEConfig(**payload["moe"]))
        network.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, ModelError) as error:
        raise ModelError(f"inconsistent decision model: {error}", path) from error
    network.eval()
    calibration = PlattScaling(**payload["calibration"])
    return DecisionModel(schema, encoder, network, calibration, dict(payload["card"]))


def resolve_model_path(model: str | Path, models_dir: Path) -> Path:
    """Return the file for a model name (``<models_dir>/decision/<name>.pt``) or a path.

    Raises:
        ModelError: If neither a file at ``model`` nor a shipped model of that name exists.
    """
    candidate = Path(model)
    if candidate.suffix == ".pt" and candidate.is_file():
        return candidate
    shipped = Path(models_dir) / "decision" / f"{model}.pt"
    if shipped.is_file():
        return shipped
    available = sorted(p.stem for p in (Path(models_dir) / "decision").glob("*.pt"))
    raise ModelError(f"no decision model {str(model)!r}; available: {available or 'none'}")
