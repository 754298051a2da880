"""The Python API of segmentation: an image file in, the output bundle on disk out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict, Unpack

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from medverse.core.volume import LabelMap, Volume
from medverse.inference.batch import StudyOutcome, find_studies, segment_many
from medverse.inference.checks import check_modality, is_dicom
from medverse.inference.loading import load_model
from medverse.inference.outputs import OutputPaths, write_outputs
from medverse.inference.predictor import Predictor
from medverse.inference.report import Report, measure
from medverse.inference.spatial import (
    DEFAULT_TIMEOUT_S,
    WholeVolumePredictor,
    whole_volume_predictor,
)
from medverse.io.dicom import read_image
from medverse.models.checkpoint import LoadedModel

if TYPE_CHECKING:
    from medverse.io.seg_source import SegSource


@dataclass(frozen=True)
class SegmentResult:
    """What a segmentation produced.

    Attributes:
        labels: The label map on the input's native grid.
        report: The measurements written to ``report.json``.
        outputs: The files written.
        seconds: Wall time of each step (``read``, ``model``, ``predict``, ``write``).
    """

    labels: LabelMap
    report: Report
    outputs: OutputPaths
    seconds: dict[str, float] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """All written files, in bundle order (as ``outputs.files()``)."""
        return self.outputs.files()


class PredictOptions(TypedDict, total=False):
    """How the network runs: the `Predictor` arguments `segment` and `segment_folder` pass on.

    Attributes:
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        overlap: Sliding-window overlap in [0, 1); more is smoother and slower.
        mirror_tta: Average over 8 mirrorings (8x the compute).
        backend: ``torch``, ``compile`` or ``onnxruntime``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (torch backends).
        skip_background: Skip windows holding only air/background.
        sw_batch_size: Windows per network call (default: 8 on CUDA, one per CPU thread).
        onnx_path: An ONNX file from ``medverse export`` for the onnxruntime backend.
        provider: ONNX Runtime provider: ``cpu``, ``cuda`` or ``tensorrt`` (default: the
            device's).
    """

    device: str
    overlap: float
    mirror_tta: bool
    backend: str
    precision: str
    skip_background: bool
    sw_batch_size: int | None
    onnx_path: str | Path | None
    provider: str | None


class _Step(Protocol):
    def __call__(self, name: str, description: str) -> AbstractContextManager[None]: ...


def segment(
    input_path: str | Path,
    *,
    model_path: str | Path,
    out_dir: str | Path,
    series_uid: str | None = None,
    volume: int | None = None,
    progress: bool = True,
    seg_type: str | None = None,
    on_step: Callable[[str], None] | None = None,
    spatial_parallel: int | None = None,
    spatial_timeout_s: float = DEFAULT_TIMEOUT_S,
    **options: Unpack[PredictOptions],
) -> SegmentResult:
    """Segment a DICOM series or NIfTI image with a model and write the output bundle.

    The bundle in ``out_dir``: ``labels.nii.gz``, ``seg.dcm`` (DICOM input only),
    ``meshes.glb``, ``report.json`` and ``overview.png``; on any failure ``out_dir`` is left
    as it was.

    Args:
        input_path: A DICOM folder or file, or a ``.nii``/``.nii.gz`` file.
        model_path: A checkpoint written by ``save_checkpoint``, or a MONAI bundle folder
            (see `medverse.inference.loading.load_model`).
        out_dir: Output folder, created if needed.
        series_uid: Which series to read when a DICOM folder holds several.
        volume: Of a multi-volume DICOM series (phases, echoes, b-values, mosaics), segment
            volume K (1-based, as ``medverse info`` lists them); without it such a series is
            refused before inference, naming its volumes.
        progress: Show the steps on stderr.
        seg_type: DICOM SEG encoding: ``LABELMAP`` (default) or ``BINARY`` (older viewers).
        on_step: Called with each step's name (``model``, ``read``, ``predict``, ``write``)
            as it finishes; it may raise to stop the run (the service's jobs do).
        spatial_parallel: Whole-volume inference (one window, the whole image) on this many
            local processes, the volume split between them (1: in this process); None:
            sliding windows. See `medverse.inference.spatial`.
        spatial_timeout_s: Deadline of the spatially parallel prediction.
        **options: How the network runs (`PredictOptions`).

    Returns:
        The labels, the report and the written paths.

    Raises:
        MedverseError: For a missing or bad input, checkpoint or option (one-line message).
    """
    seconds: dict[str, float] = {}
    with _progress(progress, seconds, on_step) as step:
        with step("model", "loading the model"):
            model = load_model(model_path, map_location="cpu", lazy=True)
        with step("read", "reading the image"):
            image = read_image(input_path, series_uid, volume=volume)
        check_modality(image, model.plan, input_path)
        seg_source = _seg_source(image)
        predictor: Predictor | WholeVolumePredictor = (
            Predictor(model, **options)
            if spatial_parallel is None
            else whole_volume_predictor(
                model, image, input_path, spatial_parallel, options, spatial_timeout_s
            )
        )
        with step("predict", f"segmenting on {predictor.device}"):
            labels = predictor.predict(image)
        report = measure(labels, source=image).model_copy(
            update={"model": _model_info(model, model_path, predictor)}
        )
        if seg_source is not None:  # the UIDs the SEG is filed under and what it repaired
            report.study.update(seg_source.report_fields())
        with step("write", "writing labels, SEG, meshes, report, overview"):
            outputs = write_outputs(
                image,
                labels,
                out_dir,
                source_is_dicom=is_dicom(image),
                report=report,
                modality=str(model.plan.modality),
                algorithm_name=model.title,
                seg_type=seg_type,
            )
    return SegmentResult(labels, report, outputs, seconds)


def segment_folder(
    folder: str | Path,
    *,
    model_path: str | Path,
    out_dir: str | Path,
    labels_only: bool = False,
    seg_type: str | None = None,
    on_done: Callable[[StudyOutcome], None] | None = None,
    **options: Unpack[PredictOptions],
) -> list[StudyOutcome]:
    """Segment every study in a folder; each gets ``out_dir/<study>/``.

    The next study is read in a background thread while one is in the network, windows of
    consecutive studies share batches, and files are written in another thread. A study that
    fails (unreadable, wrong modality) is reported in its outcome; the others go on.

    Args:
        folder: Holds the studies: ``.nii``/``.nii.gz`` files and DICOM subfolders.
        model_path: A checkpoint written by ``save_checkpoint``, or a MONAI bundle folder.
        out_dir: Output root, created if needed.
        labels_only: Write only ``labels.nii.gz`` per study.
        seg_type: DICOM SEG encoding: ``LABELMAP`` (default) or ``BINARY``.
        on_done: Called with each study's outcome as soon as it is known.
        **options: How the network runs (`PredictOptions`).

    Returns:
        One outcome per study, in name order.

    Raises:
        MedverseError: For a missing folder, an empty one, or a bad checkpoint or option.
    """
    studies = find_studies(folder)
    model = load_model(model_path, map_location="cpu", lazy=True)
    predictor = Predictor(model, **options)
    return segment_many(
        studies, predictor, out_dir, labels_only=labels_only, seg_type=seg_type, on_done=on_done
    )


def export_labels(
    image: Volume,
    labels: LabelMap,
    out_dir: str | Path,
    *,
    source_is_dicom: bool | None = None,
    algorithm_name: str = "medverse reference",
    seg_type: str | None = None,
    progress: bool = False,
) -> SegmentResult:
    """Write the output bundle for labels that already exist (e.g. a reference label map).

    Args:
        image: The image the labels belong to (the DICOM series for a DICOM SEG).
        labels: Labels on the image's grid.
        out_dir: Output folder, created if needed; left as it was on failure.
        source_is_dicom: Write ``seg.dcm``; default: when ``image`` was read from DICOM.
        algorithm_name: Name recorded in the DICOM SEG.
        seg_type: DICOM SEG encoding: ``LABELMAP`` (default) or ``BINARY``.
        progress: Show the step on stderr.

    Raises:
        InputError: If the labels are not on the image's grid.
    """
    dicom = is_dicom(image) if source_is_dicom is None else source_is_dicom
    report = measure(labels, source=image)
    seconds: dict[str, float] = {}
    with _progress(progress, seconds) as step, step("write", "writing the output bundle"):
        outputs = write_outputs(
            image,
            labels,
            out_dir,
            source_is_dicom=dicom,
            report=report,
            algorithm_name=algorithm_name,
            seg_type=seg_type,
        )
    return SegmentResult(labels, report, outputs, seconds)


def _seg_source(image: Volume) -> SegSource | None:
    """A DICOM input's SEG source, checked before the network runs (None for NIfTI)."""
    if not is_dicom(image):
        return None
    from medverse.io.seg_source import check_seg_source  # highdicom: a second to import

    return check_seg_source(image)


def _model_info(
    model: LoadedModel, model_path: str | Path, predictor: Predictor | WholeVolumePredictor
) -> dict[str, str]:
    return {
        "checkpoint": Path(model_path).name,
        "preset": str(model.plan.preset),
        **predictor.describe(),
    }


@contextmanager
def _progress(
    enabled: bool, seconds: dict[str, float], on_step: Callable[[str], None] | None = None
) -> Iterator[_Step]:
    """A step timer and, when enabled, a rich spinner per step on stderr.

    The spinners are transient: they vanish when the work ends, so a failure prints only its
    one-line error and a success only what the caller prints.
    """
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )

    @contextmanager
    def step(name: str, description: str) -> Iterator[None]:
        task = bar.add_task(description, total=1)
        start = time.perf_counter()
        yield
        seconds[name] = time.perf_counter() - start
        bar.update(task, completed=1)
        if on_step is not None:
            on_step(name)

    with bar:
        yield step
