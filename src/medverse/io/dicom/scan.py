"""Find DICOM series in a folder from headers alone: group, classify, sort, note what is skipped."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medverse.core.errors import DicomError, InputError
from medverse.io.dicom.geometry import (
    Frame,
    check_frames,
    frames_from_header,
    median_slice_spacing,
    sort_frames,
)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
TEXT_KEYWORDS = (
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
)
NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG", "FID", "DOC", "RWV"}
    | {"AU", "ECG", "HD", "PLAN", "RAW"}
)
NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registration, fiducials, segmentation, surfaces
    "1.2.840.10008.5.1.4.1.1.67",  # real world value mapping
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF / CDA
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT structure set
    "1.2.840.10008.5.1.4.1.1.481.4",  # RT beams treatment record
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT plan
)


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


@dataclass
class _Record:
    """What one readable DICOM object contributes to its series (no dataset kept)."""

    path: Path
    group: str
    is_image: bool
    text: dict[str, str]
    rows: int
    columns: int
    n_frames: int
    frames: list[Frame]
    frame_error: str | None


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


def describe_folder(path: str | Path) -> FolderScan:
    """Scan ``path`` and return its series with the files that were skipped or damaged.

    Args:
        path: A folder (searched recursively) or a single file.

    Raises:
        InputError: If the path does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    records: list[_Record] = []
    skipped: list[SkippedFile] = []
    damaged: list[SkippedFile] = []
    # pydicom converts values lazily and warns about odd ones on access: keep stderr clean.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for file in _walk(path, skipped):
            outcome = _read_header(file)
            if isinstance(outcome, _Record):
                records.append(outcome)
            else:
                (damaged if outcome.damaged else skipped).append(outcome)
        groups: dict[str, list[_Record]] = {}
        for record in records:
            groups.setdefault(record.group, []).append(record)
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


def _read_header(file: Path) -> _Record | SkippedFile:
    """Read one header; return a record, or why the file is skipped or damaged."""
    try:
        with file.open("rb") as handle:
            preamble = handle.read(132)
    except OSError as error:
        return SkippedFile(file, f"unreadable file ({error.strerror or error})", damaged=True)
    if len(preamble) < 132 or preamble[128:132] != b"DICM":
        return SkippedFile(file, "not DICOM (no DICM preamble)")
    try:
        ds = pydicom.dcmread(file, stop_before_pixels=True, force=False)
        return _summarise(ds, file)
    except InvalidDicomError:
        return SkippedFile(file, "not DICOM (invalid file meta)")
    # A damaged header makes pydicom raise many types (NotImplementedError for a garbled VR,
    # BytesLengthException, TypeError, ...), at read time or when a value is first converted.
    except Exception as error:
        text = " ".join(str(error).split())[:160] or type(error).__name__
        return SkippedFile(file, f"unreadable DICOM header ({text})", damaged=True)


def _summarise(ds: Dataset, file: Path) -> _Record | SkippedFile:
    """Pull out of a header everything the scan needs (every value is converted here)."""
    sop_class = sop_class_uid(ds)
    if sop_class == DICOMDIR_SOP_CLASS:
        return SkippedFile(file, "DICOMDIR index (not a series)")
    text = {k: str(ds.get(k, "") or "").strip() for k in TEXT_KEYWORDS}
    text["SOPClassUID"] = sop_class
    is_image = _is_image(text["Modality"], sop_class)
    if is_image and ("Rows" not in ds or "Columns" not in ds):
        reason = "DICOM header is incomplete: no Rows/Columns (file truncated?)"
        return SkippedFile(file, reason, text["SeriesInstanceUID"], damaged=True)
    frames: list[Frame] = []
    frame_error = None
    if is_image:
        try:
            frames = frames_from_header(ds, file)
        except DicomError as error:
            frame_error = error.one_line()
    return _Record(
        path=file,
        group=text["SeriesInstanceUID"] or _stand_in_key(text, file),
        is_image=is_image,
        text=text,
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        n_frames=int(ds.get("NumberOfFrames", 1) or 1),
        frames=frames,
        frame_error=frame_error,
    )


def sop_class_uid(ds: Dataset) -> str:
    """Return the dataset's SOPClassUID, or the file meta MediaStorageSOPClassUID if empty."""
    uid = str(ds.get("SOPClassUID", "") or "").strip()
    if not uid and getattr(ds, "file_meta", None) is not None:
        uid = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "").strip()
    return uid


def _is_image(modality: str, sop_class: str) -> bool:
    if modality.upper() in NON_IMAGE_MODALITIES:
        return False
    return not sop_class.startswith(NON_IMAGE_SOP_PREFIXES)


def _stand_in_key(text: dict[str, str], file: Path) -> str:
    """A stable key for files with an empty SeriesInstanceUID: same folder name and series fields.

    Only the folder's name counts (not its full path), so the key is the same whatever the
    working directory or wherever the tree was copied.
    """
    keys = ("StudyInstanceUID", "FrameOfReferenceUID", "Modality", "SeriesNumber")
    parts = [file.parent.name, *(text[k] for k in keys), text["SeriesDescription"]]
    return "nouid-" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


def _series_info(members: Sequence[_Record], root: Path) -> SeriesInfo:
    first = members[0]
    common: dict[str, Any] = {
        "series_uid": first.text["SeriesInstanceUID"],
        "study_uid": first.text["StudyInstanceUID"],
        "modality": first.text["Modality"],
        "description": first.text["SeriesDescription"],
        "sop_class_uid": first.text["SOPClassUID"],
        "key": first.group,
        "frame_of_reference_uid": first.text["FrameOfReferenceUID"],
        "rows": first.rows,
        "columns": first.columns,
    }
    if not all(m.is_image for m in members):
        return SeriesInfo(
            **common,
            files=tuple(sorted(m.path for m in members)),
            slices=sum(m.n_frames for m in members) if first.rows else 0,
            spacing=None,
            is_image=False,
        )
    return _image_series_info(members, root, common)


def _image_series_info(
    members: Sequence[_Record], root: Path, common: dict[str, Any]
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
    slice_spacing = median_slice_spacing(frames)
    spacing = None
    if slice_spacing is not None:
        row_spacing, col_spacing = frames[0].pixel_spacing
        spacing = (col_spacing, row_spacing, slice_spacing)
    return SeriesInfo(
        **common,
        files=files,
        slices=sum(m.n_frames for m in members),
        spacing=spacing,
        is_image=True,
        problem=problem,
        frames=tuple(frames),
    )
