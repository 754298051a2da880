"""Exact-resume state: weights, optimiser, scheduler, scaler, every RNG, epoch and history."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medverse.core.errors import InputError
from medverse.io.atomic import atomic_path

RESUME_FILE = "resume_state.pt"
RESUME_FORMAT = "medverse-resume"
RESUME_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """Return the python, numpy, torch and CUDA RNG states, in a ``weights_only``-safe form."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            pos,
            has_gauss,
            cached,
        ],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore the RNG states captured by `capture_rng`."""
    version, mt, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class ResumeState:
    """Everything needed to continue a run as if it had never stopped.

    Attributes:
        epoch: Completed epochs (the next epoch is ``epoch + 1``).
        model: Network ``state_dict``.
        optimizer: Optimiser ``state_dict``.
        scheduler: LR scheduler ``state_dict``.
        scaler: Grad-scaler state (None without fp16).
        rng: One `capture_rng` dict per process, by rank.
        best_dice: Best validation mean Dice so far.
        best_epoch: Epoch of ``best_dice``.
        history: The metrics rows of every completed epoch.
        world_size: Number of processes that trained.
    """

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None
    rng: list[dict[str, Any]]
    best_dice: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    world_size: int = 1


def save_resume_state(state: ResumeState, run_dir: Path) -> Path:
    """Write the state to ``run_dir/resume_state.pt`` atomically; return the path."""
    target = Path(run_dir) / RESUME_FILE
    payload = {"format": RESUME_FORMAT, "version": RESUME_VERSION, **state.__dict__}
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def load_resume_state(run_dir: Path) -> ResumeState:
    """Read ``run_dir/resume_state.pt`` (tensors on the CPU).

    Raises:
        InputError: If the file is missing or not a medverse resume state.
    """
    path = Path(run_dir) / RESUME_FILE
    if not path.is_file():
        raise InputError("nothing to resume: no resume_state.pt in the run folder", run_dir)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn or foreign file: say so in one line
        raise InputError(f"cannot read the resume state ({type(error).__name__})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise InputError("not a medverse resume state", path)
    if payload.get("version") != RESUME_VERSION:
        raise InputError(f"resume state version {payload.get('version')} is not supported", path)
    fields = {k: v for k, v in payload.items() if k not in ("format", "version")}
    return ResumeState(**fields)
