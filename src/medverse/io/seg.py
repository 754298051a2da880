"""DICOM SEG out and in: a LabelMap on a DICOM series' grid <-> a Segmentation object (highdicom).

Writing references the source SOP instances frame by frame; reading (``medverse.io.seg_read``,
re-exported here) places frames back onto a reference series by those references, or builds
the grid from the SEG's own plane positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.sr.codedict import codes

from medverse import __version__
from medverse.core.errors import ConfigError, InputError
from medverse.core.logging import get_logger
from medverse.core.registry import label_color
from medverse.core.volume import LabelMap, Volume
from medverse.io.atomic import atomic_path
from medverse.io.seg_codes import segment_codes, structure_of
from medverse.io.seg_read import SEG_SOP_CLASSES, read_seg
from medverse.io.seg_source import SegSource, check_seg_source

__all__ = [
    "SEG_SOP_CLASSES",
    "SegSource",
    "check_seg_source",
    "default_segmentation_type",
    "read_seg",
    "write_seg",
]

_GRID_TOL_MM = 1e-2
_LOG = get_logger(__name__)


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
    checked = check_seg_source(source)
    for note in checked.notes:
        _LOG.warning("DICOM SEG %s: %s", path.name, note)
    pixels, numbers = _pixel_array(labels, present, seg_type, checked.slice_of_frame)
    descriptions = _descriptions(labels, present, numbers, algorithm_name, algorithm_version)
    with warnings.catch_warnings():
        # highdicom's person-name check quotes the patient's name: keep PHI off the console.
        warnings.filterwarnings("ignore", message=".*intended person name")
        seg = hd.seg.Segmentation(
            source_images=list(checked.datasets),
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


def _pixel_array(
    labels: LabelMap,
    present: Sequence[int],
    seg_type: hd.seg.SegmentationTypeValues,
    slice_of_frame: Sequence[int],
) -> tuple[np.ndarray, list[int]]:
    """Frames (f, rows, cols) in source frame order, and the segment number of each value."""
    frames = np.ascontiguousarray(labels.array.transpose(2, 1, 0)[list(slice_of_frame)])
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
    structure = structure_of(labels.labels)
    return [
        _describe(number, value, labels.labels.get(value, f"label_{value}"), structure, algorithm)
        for number, value in zip(numbers, present)
    ]


def _describe(
    number: int,
    value: int,
    name: str,
    structure: str,
    algorithm: hd.AlgorithmIdentificationSequence,
) -> hd.seg.SegmentDescription:
    coded = segment_codes(name, structure)
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=coded.category,
        segmented_property_type=coded.kind,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*label_color(value, name)),
    )
    if coded.modifier is not None:  # highdicom takes no modifier argument; the module allows it
        kind = description.SegmentedPropertyTypeCodeSequence[0]
        kind.SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(coded.modifier)
        ]
    return description
