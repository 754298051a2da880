"""Run one segmentation for a job, step by step, reporting progress between steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medverse.inference.api import segment

# Fraction of the job done after each step (the prediction is the long one).
PROGRESS = {"model": 0.1, "read": 0.25, "predict": 0.8, "write": 0.95}


def segment_for_job(
    input_path: Path,
    series_uid: str | None,
    model_path: Path,
    out_dir: Path,
    *,
    device: str,
    step: Callable[[float], None],
) -> list[Path]:
    """Segment one stored series (or NIfTI image) and write the bundle into ``out_dir``.

    :func:`medverse.inference.api.segment`, with ``step(fraction)`` called after each of its
    steps; ``step`` may raise to stop the job (cancelled, or the lease was lost).

    Args:
        input_path: A DICOM series folder or a NIfTI file.
        series_uid: The series in the folder.
        model_path: The checkpoint.
        out_dir: Where the bundle goes (a staging folder; published by the caller).
        device: ``auto``, ``cpu`` or ``cuda``.
        step: Progress callback.

    Returns:
        The files written.

    Raises:
        MedverseError: For a bad input or checkpoint (the message names it).
    """
    result = segment(
        input_path,
        model_path=model_path,
        out_dir=out_dir,
        series_uid=series_uid,
        device=device,
        progress=False,
        on_step=lambda name: step(PROGRESS[name]),
    )
    return list(result.outputs.files())
