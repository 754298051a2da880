"""Run one segmentation for a job, step by step, reporting progress between steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medverse.inference.api import check_modality, is_dicom
from medverse.inference.outputs import write_outputs
from medverse.inference.predictor import Predictor
from medverse.inference.report import measure
from medverse.io.dicom import read_image
from medverse.models.checkpoint import load_checkpoint

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

    The same steps as :func:`medverse.inference.api.segment`, with ``step(fraction)`` called
    after each; ``step`` may raise to stop the job (cancelled, or the lease was lost).

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
    model = load_checkpoint(model_path, map_location="cpu")
    step(PROGRESS["model"])
    image = read_image(input_path, series_uid)
    check_modality(image, model.plan, input_path)
    step(PROGRESS["read"])
    predictor = Predictor(model, device=device)
    labels = predictor.predict(image)
    step(PROGRESS["predict"])
    model_info = {
        "checkpoint": model_path.name,
        "preset": str(model.plan.preset),
        "device": str(predictor.device),
        "overlap": str(predictor.overlap),
        "mirror_tta": "false",
    }
    report = measure(labels).model_copy(update={"model": model_info})
    outputs = write_outputs(
        image,
        labels,
        out_dir,
        source_is_dicom=is_dicom(image),
        report=report,
        modality=str(model.plan.modality),
        algorithm_name=f"medverse {model.plan.preset}",
    )
    step(PROGRESS["write"])
    return outputs.files()
