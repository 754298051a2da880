"""Find DICOM series in a folder from headers alone: group, classify, sort, note what is skipped."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medverse.core.errors import DicomError, InputError, NotDicomError
from medverse.io.dicom.geometry import (
    DUPLICATE_MM,
    Frame,
    check_frames,
    median_slice_spacing,
    slice_steps,
    sort_frames,
)
from medverse.io.dicom.header import DicomHeader, read_header
from medverse.io.dicom.index import DEFAULT_INDEX_DIR, indexed_map


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of every series, and why.

    Attributes:
        path: The file.
        reason: Why it was left out.
        series_uid: Its SeriesInstanceUID when the header got that far, else "".
        damaged: True for a DICOM file that is broken (as opposed to a file that is not DICOM).
    """

    path: Path
    reason: str
    series_uid: str = ""
    damaged: bool = False


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder (from headers only).

    Attributes:
        series_uid: SeriesInstanceUID ("" when the files leave it empty).
        study_uid: StudyInstanceUID ("" when empty).
        modality: Modality, e.g. "CT", "MR", "SEG".
        description: SeriesDescription.
        sop_class_uid: SOP Class UID (file meta MediaStorageSOPClassUID when the dataset's is
            empty).
        files: The files, sorted along the slice normal for image series.
        rows: Pixel rows (0 when the objects hold no image).
        columns: Pixel columns (0 when the objects hold no image).
        slices: Number of frames (a multi-frame file counts each frame).
        spacing: (column, row, slice) spacing in mm; None when it cannot be told from headers.
        is_image: False for SEG, RTSTRUCT, SR and other objects that are not image volumes.
        key: What selects this series: the UID, or a stable stand-in when the UID is empty.
        frame_of_reference_uid: FrameOfReferenceUID ("" when absent).
        problem: Why the series cannot be read as a regular volume, or None.
        frames: The frames in k order (image series only).
    """

    series_uid: str
    study_uid: str
    modality: str
    description: str
    sop_class_uid: str
    files: tuple[Path, ...]
    rows: int
    columns: int
    slices: int
    spacing: tuple[float, float, float] | None
    is_image: bool
    key: str
    frame_of_reference_uid: str = ""
    problem: str | None = None
    frames: tuple[Frame, ...] = field(default=(), repr=False, compare=False)

    def choice(self) -> str:
        """One line naming the series for a user who must pick one."""
        return f"{self.key} ({self.modality}, {self.description!r}, {self.slices} slices)"


@dataclass(frozen=True)
class FolderScan:
    """Everything found under a path.

    Attributes:
        path: The folder (or file) that was scanned.
        series: The series found, image series first, then by description and key.
        skipped: Files that are not DICOM (or are DICOMDIR indexes).
        damaged: DICOM files whose header is unreadable or incomplete.
    """

    path: Path
    series: tuple[SeriesInfo, ...]
    skipped: tuple[SkippedFile, ...]
    damaged: tuple[SkippedFile, ...]


def scan_folder(path: str | Path) -> list[SeriesInfo]:
    """Return the series under ``path`` (a folder, searched recursively, or one file).

    Only headers are read (``stop_before_pixels``); files without the DICOM preamble are
    skipped. Use :func:`describe_folder` to see which files were skipped and why.

    Args:
        path: A folder or a single DICOM file.

    Raises:
        InputError: If the path does not exist.
    """
    return list(describe_folder(path).series)


def describe_folder(path: str | Path, *, index_dir: Path | None = DEFAULT_INDEX_DIR) -> FolderScan:
    """Scan ``path`` and return its series with the files that were skipped or damaged.

    Headers come from the folder's index where a file is unchanged since the last scan
    (see :mod:`medverse.io.dicom.index`); the others are read (only the header bytes needed),
    in parallel processes when there are many.

    Args:
        path: A folder (searched recursively) or a single file.
        index_dir: Where the folder index is kept (never inside ``path``); None: no index.

    Raises:
        InputError: If the path does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    groups: dict[str, list[DicomHeader]] = {}
    skipped: list[SkippedFile] = []
    damaged: list[SkippedFile] = []
    files = list(_walk(path, skipped))
    for outcome in indexed_map(path, files, _header_or_skip, index_dir=index_dir):
        if isinstance(outcome, DicomHeader):
            groups.setdefault(outcome.series_uid, []).append(outcome)
        else:
            (damaged if outcome.damaged else skipped).append(outcome)
    series = [_series_info(members, path) for members in groups.values()]
    series.sort(key=lambda s: (not s.is_image, s.description, s.key))
    return FolderScan(path, tuple(series), tuple(skipped), tuple(damaged))


def _walk(path: Path, skipped: list[SkippedFile]) -> Iterable[Path]:
    """Yield files in a stable order; folders that cannot be listed are noted in ``skipped``."""
    if path.is_file():
        yield path
        return

    def note(error: OSError) -> None:
        where = Path(error.filename) if error.filename else path
        skipped.append(SkippedFile(where, f"folder cannot be listed ({error.strerror})"))

    for root, dirs, files in os.walk(path, onerror=note):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def _header_or_skip(file: Path) -> DicomHeader | SkippedFile:
    """Read one header; return it, or why the file is skipped or damaged."""
    try:
        header = read_header(file)
    except NotDicomError as error:
        return SkippedFile(file, error.problem)
    except DicomError as error:
        return SkippedFile(file, error.problem, damaged=True)
    if header.is_dicomdir:
        return SkippedFile(file, "DICOMDIR index (not a series)")
    if header.is_image and not (header.rows and header.columns):
        reason = "DICOM header is incomplete: no Rows/Columns (file truncated?)"
        return SkippedFile(file, reason, header.series_instance_uid, damaged=True)
    return header


def _series_info(members: Sequence[DicomHeader], root: Path) -> SeriesInfo:
    first = members[0]
    common: dict[str, Any] = {
        "series_uid": first.series_instance_uid,
        "study_uid": first.study_instance_uid,
        "modality": first.modality,
        "description": first.series_description,
        "sop_class_uid": first.sop_class_uid,
        "key": first.series_uid,
        "frame_of_reference_uid": first.frame_of_reference_uid,
        "rows": first.rows,
        "columns": first.columns,
    }
    if not all(m.is_image for m in members):
        return SeriesInfo(
            **common,
            files=tuple(sorted(m.path for m in members)),
            slices=sum(m.number_of_frames for m in members) if first.rows else 0,
            spacing=None,
            is_image=False,
        )
    return _image_series_info(members, root, common)


def _one_per_position(frames: Sequence[Frame]) -> list[Frame]:
    """Sorted frames with repeats of a position left out (a multi-volume series' one grid)."""
    kept: list[Frame] = []
    for frame, step in zip(frames, np.concatenate([[np.inf], np.abs(slice_steps(frames))])):
        if step >= DUPLICATE_MM:
            kept.append(frame)
    return kept


def _image_series_info(
    members: Sequence[DicomHeader], root: Path, common: dict[str, Any]
) -> SeriesInfo:
    errors = [m.frame_error for m in members if m.frame_error]
    problem: str | None = errors[0] if errors else None
    frames = [] if errors else sort_frames([f for m in members for f in m.frames])
    if frames:
        try:
            check_frames(frames, root)
        except DicomError as error:
            problem = error.problem
    files = tuple(dict.fromkeys(f.path for f in frames)) or tuple(sorted(m.path for m in members))
    slice_spacing = median_slice_spacing(_one_per_position(frames))
    spacing = None
    if slice_spacing is not None:
        row_spacing, col_spacing = frames[0].pixel_spacing
        spacing = (col_spacing, row_spacing, slice_spacing)
    if frames:  # a mosaic's tiles are its frames
        common.update(rows=frames[0].rows, columns=frames[0].columns)
    return SeriesInfo(
        **common,
        files=files,
        slices=len(frames) or sum(m.number_of_frames for m in members),
        spacing=spacing,
        is_image=True,
        problem=problem,
        frames=tuple(frames),
    )
