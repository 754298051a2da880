"""DICOM SEG out and in: a LabelMap on a DICOM series' grid <-> a Segmentation object (highdicom).

Writing references the source SOP instances frame by frame; reading (``medverse.io.seg_read``,
re-exported here) places frames back onto a reference series by those references, or builds
the grid from the SEG's own plane positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from medverse import __version__
from medverse.core.errors import ConfigError, DicomError, InputError
from medverse.core.registry import label_color
from medverse.core.volume import LabelMap, Volume
from medverse.io.atomic import atomic_path
from medverse.io.dicom.geometry import sop_instance_uid
from medverse.io.dicom.header import read_dataset, sop_class_uid
from medverse.io.seg_read import LPS_FLIP, SEG_SOP_CLASSES, read_seg

__all__ = ["SEG_SOP_CLASSES", "default_segmentation_type", "read_seg", "write_seg"]

_GRID_TOL_MM = 1e-2
# Type 2 patient and study attributes highdicom copies from the source into the SEG.
_COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)


def default_segmentation_type() -> hd.seg.SegmentationTypeValues:
    """LABELMAP where highdicom supports it (one frame per slice, value = label), else BINARY."""
    types = hd.seg.SegmentationTypeValues
    return types.LABELMAP if hasattr(types, "LABELMAP") else types.BINARY


def write_seg(
    labels: LabelMap,
    source: Volume,
    path: str | Path,
    *,
    algorithm_name: str = "medverse",
    algorithm_version: str = __version__,
    series_description: str = "medverse segmentation",
    series_number: int = 300,
    segmentation_type: str | None = None,
) -> Path:
    """Write a label map as a DICOM SEG that references the source series, atomically.

    One segment per label value present, named from ``labels.labels``, coloured from the
    registry (recommended display CIELab) and coded with SNOMED CT (the structure's own code
    when pydicom knows the name, else "Tissue"/"Organ"). For LABELMAP the segment number is the
    label value; BINARY renumbers the present labels 1..n in ascending order.

    Args:
        labels: Labels on exactly the grid of ``source``.
        source: The series as read by :func:`medverse.io.dicom.read_series` (its ``dicom``
            source: the files and SOP instance UIDs of its slices).
        path: The ``.dcm`` file to write.
        algorithm_name: Recorded as the segmentation algorithm.
        algorithm_version: Its version.
        series_description: SeriesDescription of the SEG.
        series_number: SeriesNumber of the SEG.
        segmentation_type: "LABELMAP" or "BINARY"; default :func:`default_segmentation_type`.

    Returns:
        The written path.

    Raises:
        InputError: If the labels are empty or not on the source grid.
        DicomError: If the source files are missing or do not match the source volume.
        ConfigError: For an unknown ``segmentation_type``.
    """
    path = Path(path)
    try:
        seg_type = hd.seg.SegmentationTypeValues(
            segmentation_type.upper() if segmentation_type else default_segmentation_type().value
        )
    except ValueError:
        raise ConfigError(
            f"unknown DICOM SEG type {segmentation_type!r}; use LABELMAP or BINARY", path
        ) from None
    _check_same_grid(labels, source)
    present = labels.present_labels()
    if not present:
        raise InputError("label map holds no labels; a DICOM SEG needs at least one segment")
    datasets = _source_datasets(source)
    pixels, numbers = _pixel_array(labels, present, seg_type)
    descriptions = _descriptions(labels, present, numbers, algorithm_name, algorithm_version)
    with warnings.catch_warnings():
        # highdicom's person-name check quotes the patient's name: keep PHI off the console.
        warnings.filterwarnings("ignore", message=".*intended person name")
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=pixels,
            segmentation_type=seg_type,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="medverse",
            manufacturer_model_name=algorithm_name,
            software_versions=algorithm_version,
            device_serial_number="none",
            series_description=series_description,
        )
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return path


def _check_same_grid(labels: LabelMap, source: Volume) -> None:
    if labels.shape != source.shape or not np.allclose(
        labels.affine, source.affine, atol=_GRID_TOL_MM
    ):
        raise InputError(
            f"label map grid {labels.shape} does not match the source series grid "
            f"{source.shape} (same shape and affine needed; resample the labels first)"
        )


def _source_datasets(source: Volume) -> list[Dataset]:
    """Read the source headers in k order and check them against the volume's geometry."""
    dicom = source.dicom
    if dicom is None or len(dicom.files) != source.shape[2]:
        raise InputError("source volume lacks one DICOM file per slice; read it with read_series")
    if len(set(dicom.files)) != len(dicom.files):
        raise InputError("multi-frame DICOM sources are not supported for SEG export")
    datasets = []
    for k, (file, uid) in enumerate(zip(dicom.files, dicom.sop_instance_uids)):
        try:
            ds = _for_highdicom(read_dataset(file, pixels=False))
        except DicomError as error:
            raise DicomError(f"source file unreadable ({error.problem})", file) from None
        if str(ds.SOPInstanceUID) != uid:
            raise DicomError(f"SOP Instance UID differs from the source volume's slice {k}", file)
        _check_slice(ds, source, k, file)
        datasets.append(ds)
    return datasets


def _for_highdicom(ds: Dataset) -> Dataset:
    """Fill in what highdicom needs that real files often leave empty or out."""
    ds.SOPInstanceUID = sop_instance_uid(ds)
    ds.SOPClassUID = sop_class_uid(ds)
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
        del ds.SpecificCharacterSet  # empty means the default repertoire; highdicom wants absent
    for keyword in _COPIED_TYPE2:  # often absent from real files; highdicom reads them all
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _check_slice(ds: Dataset, source: Volume, k: int, file: Path) -> None:
    """Slice k of the volume must be this file: same size and position.

    Frame k of the SEG is then ``labels.array[:, :, k].T`` (rows x columns).
    """
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if (cols, rows) != source.shape[:2]:
        raise DicomError(f"{rows}x{cols} pixels do not match the source volume", file)
    expected = (LPS_FLIP @ source.affine @ np.array([0.0, 0.0, k, 1.0]))[:3]
    position = np.array([float(v) for v in ds.get("ImagePositionPatient", [])], dtype=float)
    if position.shape != (3,) or not np.allclose(position, expected, atol=_GRID_TOL_MM):
        raise DicomError(f"position does not match slice {k} of the source volume", file)


def _pixel_array(
    labels: LabelMap, present: Sequence[int], seg_type: hd.seg.SegmentationTypeValues
) -> tuple[np.ndarray, list[int]]:
    """Frames (k, rows, cols) in source order, and the segment number of each present value."""
    frames = np.ascontiguousarray(labels.array.transpose(2, 1, 0))
    if seg_type == hd.seg.SegmentationTypeValues.LABELMAP:
        dtype = np.uint8 if max(present) < 256 else np.uint16
        return frames.astype(dtype, copy=False), list(present)
    lookup = np.zeros(int(labels.array.max()) + 1, dtype=np.uint16)
    numbers = list(range(1, len(present) + 1))
    lookup[np.asarray(present)] = numbers
    dtype = np.uint8 if len(present) < 256 else np.uint16
    return lookup[frames].astype(dtype), numbers


def _descriptions(
    labels: LabelMap, present: Sequence[int], numbers: Sequence[int], name: str, version: str
) -> list[hd.seg.SegmentDescription]:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=name, version=version, family=codes.cid7162.ArtificialIntelligence
    )
    return [
        _describe(number, value, labels.labels.get(value, f"label_{value}"), algorithm)
        for number, value in zip(numbers, present)
    ]


def _describe(
    number: int, value: int, name: str, algorithm: hd.AlgorithmIdentificationSequence
) -> hd.seg.SegmentDescription:
    category, kind = _property_codes(name)
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*label_color(value, name)),
    )


def _property_codes(name: str) -> tuple[Any, Any]:
    """SNOMED CT (category, type): the structure's code when known, else Tissue / Organ."""
    words = [w for w in name.replace("-", "_").split("_") if w]
    for candidate in (
        "".join(w.capitalize() for w in words),
        words[0].capitalize() if words else "",
    ):
        code = getattr(codes.SCT, candidate, None) if candidate else None
        if code is not None:
            return codes.SCT.AnatomicalStructure, code
    return codes.SCT.Tissue, codes.SCT.Organ
