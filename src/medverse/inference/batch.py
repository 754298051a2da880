"""Segment a folder of studies: read ahead, batch windows across studies, write behind.

A background thread reads and decodes the next study while the current one is in the
network; windows of consecutive studies share batches (`Predictor.predict_many`); a second
background thread writes each finished study's files. A study that cannot be read or written
is reported and skipped; the others go on.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from medverse.core.errors import InputError, MedverseError
from medverse.core.volume import LabelMap, Volume
from medverse.inference.checks import check_modality, is_dicom
from medverse.inference.outputs import LABELS_NAME, write_outputs
from medverse.inference.predictor import Predictor
from medverse.inference.report import measure
from medverse.io.dicom import read_image
from medverse.io.nifti import is_nifti_path, write_nifti


@dataclass(frozen=True)
class StudyOutcome:
    """What happened to one study of a folder.

    Attributes:
        source: The study's file or folder.
        out_dir: Its output folder (None if it failed).
        files: The files written.
        error: The one-line error, or None.
        finished: Seconds from the start of the batch until its files were written.
    """

    source: Path
    out_dir: Path | None
    files: tuple[Path, ...] = ()
    error: str | None = None
    finished: float = 0.0


def find_studies(folder: str | Path) -> list[Path]:
    """The studies in a folder: each ``.nii``/``.nii.gz`` file and each subfolder, by name.

    Raises:
        InputError: If ``folder`` is not a folder or holds no study.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder of studies", folder)
    found = [
        child
        for child in sorted(folder.iterdir())
        if not child.name.startswith(".")
        and (child.is_dir() or (child.is_file() and is_nifti_path(child)))
    ]
    if not found:
        raise InputError("no studies found (expected .nii/.nii.gz files or subfolders)", folder)
    return found


def study_name(path: Path) -> str:
    """The output folder name of a study: its file or folder name without the NIfTI suffix."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_ahead(
    paths: Iterable[Path], read: Callable[[Path], Volume], depth: int = 1
) -> Iterator[tuple[Path, Volume | MedverseError]]:
    """Read studies in a background thread, ``depth`` ahead of the one being consumed.

    Yields ``(path, volume)``, or ``(path, error)`` for a study that could not be read.
    """
    source = iter(paths)
    with ThreadPoolExecutor(1, thread_name_prefix="medverse-read") as pool:
        pending: deque[tuple[Path, Future[Volume]]] = deque()
        for path in source:
            pending.append((path, pool.submit(read, path)))
            if len(pending) > depth:
                break
        while pending:
            path, future = pending.popleft()
            following = next(source, None)
            if following is not None:
                pending.append((following, pool.submit(read, following)))
            try:
                yield path, future.result()
            except MedverseError as error:
                yield path, error


def segment_many(
    studies: Iterable[Path],
    predictor: Predictor,
    out_dir: str | Path,
    *,
    labels_only: bool = False,
    seg_type: str | None = None,
    on_done: Callable[[StudyOutcome], None] | None = None,
) -> list[StudyOutcome]:
    """Segment every study and write ``out_dir/<study>/`` for each.

    Args:
        studies: Study paths (see `find_studies`).
        predictor: The Predictor (its backend, device and window options).
        out_dir: Output root.
        labels_only: Write only ``labels.nii.gz`` (skip SEG, meshes, report and overview).
        seg_type: DICOM SEG encoding: ``LABELMAP`` (default) or ``BINARY``.
        on_done: Called with each outcome as soon as it is known.

    Returns:
        One outcome per study, in input order.
    """
    paths = [Path(p) for p in studies]
    root = Path(out_dir)
    start = time.perf_counter()
    outcomes: dict[Path, StudyOutcome] = {}
    images: dict[Path, Volume] = {}
    plan = predictor.plan
    options = _WriteOptions(labels_only, seg_type, str(plan.modality), predictor.model.title)

    def record(outcome: StudyOutcome) -> None:
        outcomes[outcome.source] = outcome
        if on_done is not None:
            on_done(outcome)

    def readable() -> Iterator[tuple[Path, Volume]]:
        for path, item in read_ahead(paths, read_image):
            try:
                if isinstance(item, MedverseError):
                    raise item
                check_modality(item, predictor.plan, path)
            except MedverseError as error:
                record(StudyOutcome(path, None, error=error.one_line()))
                continue
            images[path] = item
            yield path, item

    def write(path: Path, labels: LabelMap) -> None:
        image = images.pop(path)
        target = root / study_name(path)
        try:
            files = _write_study(image, labels, target, is_dicom(image), options)
        except MedverseError as error:
            record(StudyOutcome(path, None, error=error.one_line()))
            return
        record(StudyOutcome(path, target, files, finished=time.perf_counter() - start))

    with ThreadPoolExecutor(1, thread_name_prefix="medverse-write") as writer:
        writes = [
            writer.submit(write, p, labels) for p, labels in predictor.predict_many(readable())
        ]
        for future in writes:
            future.result()
    return [outcomes[p] for p in paths if p in outcomes]


@dataclass(frozen=True)
class _WriteOptions:
    """What every study of a folder gets written with."""

    labels_only: bool
    seg_type: str | None
    modality: str
    algorithm_name: str


def _write_study(
    image: Volume, labels: LabelMap, target: Path, dicom: bool, options: _WriteOptions
) -> tuple[Path, ...]:
    if options.labels_only:
        return (write_nifti(labels, target / LABELS_NAME),)
    written = write_outputs(
        image,
        labels,
        target,
        source_is_dicom=dicom,
        report=measure(labels, source=image),
        modality=options.modality,
        algorithm_name=options.algorithm_name,
        seg_type=options.seg_type,
    )
    return tuple(written.files())
