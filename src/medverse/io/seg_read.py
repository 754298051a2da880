"""DICOM SEG in: frames placed on a reference series by SOP Instance UID, or on their own grid.

Where BINARY segments overlap, the segment with the higher number (written later) wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from medverse.core.errors import DicomError, InputError, error_text
from medverse.core.volume import LabelMap, Volume
from medverse.io.dicom.header import read_dataset, sop_class_uid

__all__ = ["LPS_FLIP", "SEG_SOP_CLASSES", "read_seg"]

SEG_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"})
LPS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)
_GRID_TOL_MM = 1e-2


def read_seg(path: str | Path, reference: Volume | None = None) -> LabelMap:
    """Read a DICOM SEG (BINARY, LABELMAP or all-0/1 FRACTIONAL) as a label map.

    Args:
        path: The SEG file.
        reference: The series the SEG was made on (from ``read_series``). Frames are placed by
            their referenced SOP Instance UID, so the result is on exactly that grid. Without
            it, the grid comes from the SEG's own plane positions (cropped to the frames
            stored; empty frames may be left out by the writer).

    Returns:
        The labels: segment number -> segment label; pixel value = segment number. Where
        BINARY segments overlap, the higher segment number wins.

    Raises:
        DicomError: If the file is not a readable DICOM SEG, or does not fit the reference.
    """
    path = Path(path)
    seg = _open_seg(path)
    names = {
        int(item.SegmentNumber): str(item.get("SegmentLabel", ""))
        for item in seg.SegmentSequence
        if int(item.SegmentNumber) != 0  # LABELMAP SEGs describe the background as segment 0
    }
    meta = {
        "modality": "SEG",
        "source": str(path),
        "series_uid": str(seg.get("SeriesInstanceUID", "")),
        "segmentation_type": str(seg.SegmentationType),
    }
    try:
        if reference is None:
            return _read_own_grid(seg, names, meta, path)
        return _read_on_reference(seg, reference, names, meta, path)
    except (ValueError, RuntimeError, KeyError, AttributeError) as error:
        raise DicomError(f"cannot place the SEG frames ({error_text(error)})", path) from None


def _open_seg(path: Path) -> hd.seg.Segmentation:
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        ds = read_dataset(path)
    except DicomError as error:
        raise DicomError(f"not a readable DICOM file; {error.problem}", path) from None
    if str(ds.get("Modality", "")) != "SEG" or sop_class_uid(ds) not in SEG_SOP_CLASSES:
        modality = str(ds.get("Modality", "") or "unknown modality")
        raise DicomError(f"is not a DICOM SEG (it is a {modality} object)", path)
    try:
        return hd.seg.Segmentation.from_dataset(ds, copy=False)
    except (ValueError, AttributeError, KeyError, TypeError) as error:
        raise DicomError(f"malformed DICOM SEG ({error_text(error)})", path) from None


def _read_own_grid(
    seg: hd.seg.Segmentation, names: dict[int, str], meta: dict[str, Any], path: Path
) -> LabelMap:
    """Build the grid from the SEG's plane positions; k follows the slice normal."""
    volume = seg.get_volume(combine_segments=True, relabel=False, skip_overlap_checks=True)
    array = np.asarray(volume.array).transpose(2, 1, 0)  # (slice, row, col) -> (col, row, slice)
    affine = LPS_FLIP @ np.asarray(volume.affine)[:, [2, 1, 0, 3]]
    normal = np.cross(affine[:3, 0], affine[:3, 1])
    if float(np.dot(normal, affine[:3, 2])) < 0:  # highdicom may stack slices top-down
        affine[:3, 3] += affine[:3, 2] * (array.shape[2] - 1)
        affine[:3, 2] *= -1
        array = array[:, :, ::-1]
    return LabelMap(np.ascontiguousarray(array), affine, meta, labels=names)


def _read_on_reference(
    seg: hd.seg.Segmentation,
    reference: Volume,
    names: dict[int, str],
    meta: dict[str, Any],
    path: Path,
) -> LabelMap:
    """Place each frame on the reference slice with the SOP Instance UID it references."""
    uids = list(reference.dicom.sop_instance_uids) if reference.dicom is not None else []
    if len(uids) != reference.shape[2]:
        raise InputError("reference volume lacks SOP Instance UIDs; read it with read_series")
    if (int(seg.Columns), int(seg.Rows)) != reference.shape[:2]:
        raise DicomError(
            f"SEG frames are {seg.Rows}x{seg.Columns}, the reference slices "
            f"{reference.shape[1]}x{reference.shape[0]}",
            path,
        )
    frames = _frame_sources(seg)
    if not frames or len(set(uids)) != len(uids):
        # no frame names its source image, or one multi-frame source holds every slice (its
        # frames share one UID): place the frames by their plane positions
        return _paste_on_grid(_read_own_grid(seg, names, meta, path), reference, path)
    missing = {uid for uid, _ in frames} - set(uids)
    if missing:
        raise DicomError(
            f"{len(missing)} SEG frame source(s) are not slices of the reference series", path
        )
    _check_geometry(seg, frames, reference, uids, path)
    framed = {uid for uid, _ in frames}
    wanted = [u for u in uids if u in framed]
    array = np.zeros(reference.shape, dtype=np.uint16)
    if wanted:
        stack = seg.get_pixels_by_source_instance(
            wanted,
            combine_segments=True,
            relabel=False,
            skip_overlap_checks=True,
            ignore_spatial_locations=True,  # checked above from the plane positions
        )
        for plane, uid in zip(stack, wanted):
            array[:, :, uids.index(uid)] = plane.T
    dtype = np.uint8 if array.max(initial=0) < 256 else np.uint16
    return LabelMap(
        array.astype(dtype), reference.affine, meta, labels=names, dicom=reference.dicom
    )


def _frame_sources(seg: hd.seg.Segmentation) -> list[tuple[str, np.ndarray | None]]:
    """(source SOP Instance UID, LPS plane position or None) of every frame."""
    shared = seg.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    found = []
    for item in seg.get("PerFrameFunctionalGroupsSequence", []):
        sources = [
            str(source.ReferencedSOPInstanceUID)
            for derivation in item.get("DerivationImageSequence", [])
            for source in derivation.get("SourceImageSequence", [])
        ]
        if len(sources) != 1:
            return []
        planes = item.get("PlanePositionSequence") or shared.get("PlanePositionSequence")
        position = None
        if planes:
            position = np.array([float(v) for v in planes[0].ImagePositionPatient])
        found.append((sources[0], position))
    return found


def _check_geometry(
    seg: hd.seg.Segmentation,
    frames: list[tuple[str, np.ndarray | None]],
    reference: Volume,
    uids: list[str],
    path: Path,
) -> None:
    """Frames must lie on the slices they reference: orientation, pixel size and position.

    Checked here because many SEGs (dcmqi's among them) leave SpatialLocationsPreserved out.
    """
    shared = seg.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    lps = LPS_FLIP @ reference.affine
    spacing = np.linalg.norm(lps[:3, :2], axis=0)  # along i (columns) and j (rows)
    orientation = shared.get("PlaneOrientationSequence")
    if orientation:
        expected = np.concatenate([lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]])
        found = np.array([float(v) for v in orientation[0].ImageOrientationPatient])
        if not np.allclose(found, expected, atol=1e-3):
            raise DicomError("SEG frames are oriented differently from the reference", path)
    measures = shared.get("PixelMeasuresSequence")
    if measures and "PixelSpacing" in measures[0]:
        row_step, col_step = (float(v) for v in measures[0].PixelSpacing)
        if not np.allclose([col_step, row_step], spacing, atol=1e-3):
            raise DicomError("SEG pixel spacing differs from the reference", path)
    for uid, position in frames:
        if position is None:
            continue
        expected = (lps @ np.array([0.0, 0.0, uids.index(uid), 1.0]))[:3]
        if not np.allclose(position, expected, atol=_GRID_TOL_MM):
            raise DicomError(
                "a SEG frame does not lie on the reference slice it references "
                f"({_fmt(position)} vs {_fmt(expected)} mm)",
                path,
            )


def _paste_on_grid(own: LabelMap, reference: Volume, path: Path) -> LabelMap:
    """Copy labels onto a reference grid with the same axes and spacing (integer offset)."""
    index = np.linalg.inv(reference.affine) @ own.affine
    offset = np.rint(index[:3, 3]).astype(int)
    if not (
        np.allclose(index[:3, :3], np.eye(3), atol=1e-3)
        and np.allclose(index[:3, 3], offset, atol=1e-2)
    ):
        raise DicomError("SEG frames do not lie on the reference grid", path)
    end = offset + np.array(own.shape)
    if np.any(offset < 0) or np.any(end > np.array(reference.shape)):
        raise DicomError("SEG frames reach outside the reference volume", path)
    array = np.zeros(reference.shape, dtype=own.array.dtype)
    array[offset[0] : end[0], offset[1] : end[1], offset[2] : end[2]] = own.array
    return LabelMap(array, reference.affine, own.meta, labels=own.labels, dicom=reference.dicom)


def _fmt(values: np.ndarray) -> str:
    return ", ".join(f"{v:.2f}" for v in values)
