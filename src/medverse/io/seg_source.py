"""The source series of a DICOM SEG, checked and made fit for it before any inference runs.

Everything that can refuse a SEG is here, so inference can ask first (:func:`check_seg_source`)
and the SEG step afterwards only writes. What real files get wrong and a SEG must not copy is
repaired in memory (the files are never touched) and said in ``notes``: orientation jitter
within the reader's tolerance is snapped to the first slice's, invalid dates, times, ages and
names are emptied or dropped, and empty Study/Series Instance UIDs get the one stand-in rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, DT, TM, validate_value

from medverse.core.errors import DicomError, InputError
from medverse.core.volume import Volume
from medverse.io.dicom.geometry import ORIENTATION_TOLERANCE, frames_from_header, sop_instance_uid
from medverse.io.dicom.header import header_of, read_dataset, sop_class_uid
from medverse.io.seg_read import LPS_FLIP

__all__ = ["SegSource", "check_seg_source"]

_POSITION_TOL_MM = 1e-2
# Type 2 patient and study attributes highdicom copies from the source into the SEG: kept
# (empty when absent or invalid), because highdicom reads them all.
_COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_CHECKED_VRS = ("DA", "DT", "TM", "AS", "PN")
_PARSERS: dict[str, Any] = {"DA": DA, "DT": DT, "TM": TM}


@dataclass(frozen=True)
class SegSource:
    """The source images of a SEG, ready for highdicom.

    Attributes:
        datasets: The source headers (no pixels), repaired in memory: one per slice, or the
            one multi-frame file.
        slice_of_frame: For SEG frame ``f`` (source image or source frame ``f``), the slice
            ``k`` of the volume it shows.
        study_instance_uid: The study UID the SEG is filed under (generated when empty).
        series_instance_uid: The referenced series UID (generated when empty).
        notes: What was repaired or generated, by attribute name (never values: PHI).
    """

    datasets: tuple[Dataset, ...]
    slice_of_frame: tuple[int, ...]
    study_instance_uid: str
    series_instance_uid: str
    notes: tuple[str, ...]

    def report_fields(self) -> dict[str, str]:
        """What a segmentation report records about the SEG's source: UIDs and repairs."""
        fields = {
            "seg_study_uid": self.study_instance_uid,
            "seg_referenced_series_uid": self.series_instance_uid,
        }
        return fields | ({"seg_notes": "; ".join(self.notes)} if self.notes else {})


def check_seg_source(volume: Volume) -> SegSource:
    """Check that a DICOM SEG can reference ``volume``'s source series; run it before inference.

    Args:
        volume: A series as read by :func:`medverse.io.dicom.read_series`.

    Returns:
        The repaired source headers, the frame order and what was repaired.

    Raises:
        InputError: If the volume was not read from DICOM files.
        DicomError: If a source file is missing, unreadable or does not match the volume
            (the message names the file).
    """
    dicom = volume.dicom
    if dicom is None or len(dicom.files) != volume.shape[2]:
        raise InputError("source volume lacks one DICOM frame per slice; read it with read_series")
    files = list(dict.fromkeys(dicom.files))
    if len(files) == 1 and len(dicom.files) > 1:
        datasets = [_read(files[0])]
        order = _multi_frame_order(datasets[0], volume, files[0])
        _share_functional_groups(datasets[0])
    elif len(files) == len(dicom.files):
        datasets = [_read(f) for f in dicom.files]
        for k, (ds, file) in enumerate(zip(datasets, dicom.files)):
            _check_slice(ds, volume, k, file, dicom.sop_instance_uids[k])
        order = list(range(len(datasets)))
    else:
        raise DicomError(
            "series splits its frames over several multi-frame files; a SEG needs one",
            files[0],
        )
    notes = _snap_orientation(datasets, files)
    notes += _repair_values(datasets)
    study, series, generated = _uids(datasets, files[0])
    return SegSource(tuple(datasets), tuple(order), study, series, tuple(notes + generated))


def _read(file: Path) -> Dataset:
    try:
        ds = read_dataset(file, pixels=False)
    except DicomError as error:
        raise DicomError(f"source file unreadable ({error.problem})", file) from None
    ds.SOPInstanceUID = sop_instance_uid(ds)
    ds.SOPClassUID = sop_class_uid(ds)
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet  # empty means the default repertoire; highdicom wants absent
    return ds


def _expected_position(volume: Volume, k: int) -> np.ndarray:
    """LPS position of the first pixel of slice k."""
    return (LPS_FLIP @ volume.affine @ np.array([0.0, 0.0, k, 1.0]))[:3]


def _check_slice(ds: Dataset, volume: Volume, k: int, file: Path, uid: str) -> None:
    """Slice k of the volume must be this file: same instance, size and position."""
    if str(ds.SOPInstanceUID) != uid:
        raise DicomError(f"SOP Instance UID differs from the source volume's slice {k}", file)
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if (cols, rows) != volume.shape[:2]:
        raise DicomError(f"{rows}x{cols} pixels do not match the source volume", file)
    position = np.array([float(v) for v in ds.get("ImagePositionPatient", [])], dtype=float)
    expected = _expected_position(volume, k)
    if position.shape != (3,) or not np.allclose(position, expected, atol=_POSITION_TOL_MM):
        raise DicomError(f"position does not match slice {k} of the source volume", file)


def _multi_frame_order(ds: Dataset, volume: Volume, file: Path) -> list[int]:
    """For each frame of a multi-frame file, the volume slice at its position."""
    frames = frames_from_header(ds, file)
    if len(frames) != volume.shape[2]:
        raise DicomError(
            f"holds {len(frames)} frames for {volume.shape[2]} slices; a SEG needs every "
            "frame of the file on the volume's grid (choose a single-volume series)",
            file,
        )
    expected = np.stack([_expected_position(volume, k) for k in range(volume.shape[2])])
    order = []
    for frame in frames:
        distance = np.linalg.norm(expected - np.asarray(frame.position), axis=1)
        k = int(np.argmin(distance))
        if distance[k] > _POSITION_TOL_MM:
            raise DicomError(f"frame {frame.index + 1} lies on no slice of the volume", file)
        order.append(k)
    if sorted(order) != list(range(volume.shape[2])):
        raise DicomError("frames do not cover every slice of the volume once", file)
    return order


def _share_functional_groups(ds: Dataset) -> None:
    """Copy pixel measures and orientation to the shared groups when every frame has the same.

    The standard allows them per frame; highdicom reads them from the shared groups only.
    """
    shared = ds.SharedFunctionalGroupsSequence[0]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    for keyword in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if keyword in shared or not all(keyword in item for item in per_frame):
            continue
        first = per_frame[0][keyword]
        if all(item[keyword].value == first.value for item in per_frame):
            setattr(shared, keyword, first.value)
            for item in per_frame:
                del item[keyword]


def _snap_orientation(datasets: list[Dataset], files: list[Path]) -> list[str]:
    """Give every slice the first slice's orientation when they differ only by jitter."""
    if len(datasets) < 2 or "ImageOrientationPatient" not in datasets[0]:
        return []
    reference = list(datasets[0].ImageOrientationPatient)
    first = np.array([float(v) for v in reference])
    worst = 0.0
    for ds, file in zip(datasets[1:], files[1:]):
        values = np.array([float(v) for v in ds.get("ImageOrientationPatient", [])])
        if values.shape != first.shape:
            raise DicomError("ImageOrientationPatient missing or malformed", file)
        difference = float(np.max(np.abs(values - first)))
        if difference > ORIENTATION_TOLERANCE:
            raise DicomError(
                f"orientation differs from the first slice's by {difference:.2g}", file
            )
        if difference > 0.0:
            ds.ImageOrientationPatient = reference
            worst = max(worst, difference)
    if worst == 0.0:
        return []
    return [
        f"ImageOrientationPatient snapped to the first slice's for the SEG (slices differed "
        f"by up to {worst:.2g}, within the reader's tolerance {ORIENTATION_TOLERANCE:g})"
    ]


def _repair_values(datasets: list[Dataset]) -> list[str]:
    """Empty (Type 2 copied ones) or drop invalid dates, times, ages, names and copied values."""
    repaired: set[str] = set()
    for ds in datasets:
        with warnings.catch_warnings():  # pydicom warns on each bad value as it converts it
            warnings.simplefilter("ignore")
            elements = list(ds)
        for elem in elements:
            if elem.VR not in _CHECKED_VRS and elem.keyword not in _COPIED_TYPE2:
                continue
            if elem.value in (None, "", b""):
                continue
            if not _valid(elem.VR, elem.value):
                repaired.add(elem.keyword or str(elem.tag))
                if elem.keyword in _COPIED_TYPE2:
                    elem.value = ""
                else:
                    del ds[elem.tag]
        for keyword in _COPIED_TYPE2:  # often absent from real files; highdicom reads them all
            if keyword not in ds:
                setattr(ds, keyword, "")
    if not repaired:
        return []
    return [f"invalid values left out of the SEG: {', '.join(sorted(repaired))}"]


def _valid(vr: str, value: Any) -> bool:
    values: Iterable[Any] = value if isinstance(value, list | tuple | MultiValue) else [value]
    try:
        for one in values:
            validate_value(vr, one, config.RAISE)
            if vr in _PARSERS and isinstance(one, str):
                _PARSERS[vr](one)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _uids(datasets: list[Dataset], file: Path) -> tuple[str, str, list[str]]:
    """Study and series UIDs for the SEG: the files', or the stand-in rule's when empty."""
    header = header_of(datasets[0], file)
    notes = []
    for keyword, uid in (
        ("StudyInstanceUID", header.study_uid),
        ("SeriesInstanceUID", header.series_uid),
    ):
        if not str(datasets[0].get(keyword, "") or ""):
            notes.append(f"{keyword} empty in the source: generated {uid}")
            for ds in datasets:
                setattr(ds, keyword, uid)
    return header.study_uid, header.series_uid, notes
