"""Checks an image must pass before a model runs on it (the API, folder batches, the service)."""

from __future__ import annotations

from pathlib import Path

from medverse.core.errors import InputError
from medverse.core.volume import Volume
from medverse.preprocessing.plan import Plan


def is_dicom(image: Volume) -> bool:
    """Return True if ``image`` was read from a DICOM series (it knows its SOP instances)."""
    return image.dicom is not None


def modality_problem(found: str | None, expected: str) -> str | None:
    """Why an image of modality ``found`` cannot go to a model trained on ``expected``, or None.

    An image that records no modality (NIfTI) passes: only a recorded mismatch is refused.

    Args:
        found: The image's modality (``CT``, ``MR``, ...), or None/empty when unknown.
        expected: The modality the model was trained on.
    """
    if found and found != expected:
        return f"the image is {found} but the model was trained on {expected} images"
    return None


def check_modality(image: Volume, plan: Plan, path: str | Path) -> None:
    """Refuse an image whose recorded modality is not the one the model was trained on.

    Raises:
        InputError: If the image says CT and the model is MR (or any other mismatch).
    """
    problem = modality_problem(image.modality, str(plan.modality))
    if problem is not None:
        raise InputError(problem, path)
