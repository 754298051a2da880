"""Slice geometry of a DICOM series: frames from headers, sort along the normal, checks, affine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset

from medverse.core.errors import DicomError
from medverse.io.dicom.dimensions import classic_dimensions, enhanced_dimensions
from medverse.io.dicom.values import ascii_values, element_value, int_value

if TYPE_CHECKING:
    from medverse.io.dicom.layout import PixelLayout

ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between direction cosines still counted as the same orientation."""
SPACING_TOLERANCE_MM = 1e-3
"""Absolute part of the slice-step tolerance (positions are often rounded to 1e-3 mm)."""
SPACING_TOLERANCE_REL = 0.01
"""Relative part of the slice-step tolerance (fraction of the median step)."""
GAP_FACTOR = 1.5
"""A step larger than this times the median step means slices are missing."""
DUPLICATE_MM = 1e-3
"""Slices closer than this along the normal are at the same position."""


@dataclass(frozen=True)
class Frame:
    """One 2D image plane of a series and where it lies in patient space (DICOM LPS mm).

    Attributes:
        path: The file holding the frame.
        index: Frame number inside the file (0 for a single-frame file).
        position: ImagePositionPatient: centre of the first pixel, LPS mm.
        orientation: ImageOrientationPatient: row direction then column direction cosines.
        pixel_spacing: DICOM PixelSpacing: (between rows, between columns) in mm.
        rows: Number of pixel rows.
        columns: Number of pixel columns.
        slope: RescaleSlope (1.0 when absent).
        intercept: RescaleIntercept (0.0 when absent).
        sop_instance_uid: The instance the frame belongs to.
        multi_frame: True when the file holds several frames.
        dimensions: The frame's values of
            :data:`~medverse.io.dicom.dimensions.DIMENSION_ATTRIBUTES` (time, echo,
            b-value...), as text ("" where absent), which tell the volumes of a series apart.
        mosaic_tiles: For a Siemens mosaic, the tiles per mosaic row (the frame is tile
            ``index`` of the file's one stored image); 0 otherwise.
        layout: Where the file's pixel data lies (from the header pass), so it is read
            without parsing the header again; None: decode the file the full way.
    """

    path: Path
    index: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    slope: float
    intercept: float
    sop_instance_uid: str
    multi_frame: bool = False
    dimensions: tuple[str, ...] = field(default=(), compare=False)
    mosaic_tiles: int = 0
    layout: PixelLayout | None = field(default=None, compare=False, repr=False)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal: row direction x column direction."""
        o = np.asarray(self.orientation, dtype=np.float64)
        n = np.cross(o[:3], o[3:])
        return n / max(float(np.linalg.norm(n)), 1e-12)


def sop_instance_uid(ds: Dataset) -> str:
    """Return SOPInstanceUID, falling back to the file meta MediaStorageSOPInstanceUID."""
    text = ascii_values(ds, "SOPInstanceUID")
    uid = text[0] if text else str(ds.get("SOPInstanceUID", "") or "")
    if not uid and getattr(ds, "file_meta", None) is not None:
        uid = str(ds.file_meta.get("MediaStorageSOPInstanceUID", "") or "")
    return uid


def frames_from_header(ds: Dataset, path: Path) -> list[Frame]:
    """Return the frames a header describes (one for a classic image, N for a multi-frame file).

    Args:
        ds: The file's dataset (header only is enough).
        path: The file, named in errors.

    Raises:
        DicomError: If a position, orientation or pixel spacing is missing or malformed.
    """
    n_frames = int_value(ds, "NumberOfFrames", 1)
    per_frame = element_value(ds, "PerFrameFunctionalGroupsSequence")
    shared_seq = element_value(ds, "SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else Dataset()
    if per_frame is not None or shared_seq is not None:
        if per_frame is None or len(per_frame) != n_frames:
            raise DicomError(
                f"multi-frame header lists {0 if per_frame is None else len(per_frame)} "
                f"per-frame groups for {n_frames} frames",
                path,
            )
        return [_enhanced_frame(ds, fg, shared, i, path) for i, fg in enumerate(per_frame)]
    first = _classic_frame(ds, path)
    if n_frames == 1:
        return [first]
    offsets = _frame_offsets(ds, n_frames, path)
    start = np.asarray(first.position)
    return [
        replace(first, index=i, position=_vec3(start + off * first.normal), multi_frame=True)
        for i, off in enumerate(offsets)
    ]


def _classic_frame(ds: Dataset, path: Path) -> Frame:
    """Geometry of a classic single-frame image (attributes at the top level)."""
    return Frame(
        path=path,
        index=0,
        position=_vec3(_required(ds, "ImagePositionPatient", 3, path)),
        orientation=_vec6(_required(ds, "ImageOrientationPatient", 6, path)),
        pixel_spacing=_vec2(_required(ds, "PixelSpacing", 2, path)),
        rows=int_value(ds, "Rows", 0),
        columns=int_value(ds, "Columns", 0),
        slope=_top_number(ds, "RescaleSlope", 1.0),
        intercept=_top_number(ds, "RescaleIntercept", 0.0),
        sop_instance_uid=sop_instance_uid(ds),
        dimensions=classic_dimensions(ds),
    )


def _enhanced_frame(ds: Dataset, fg: Dataset, shared: Dataset, index: int, path: Path) -> Frame:
    """Geometry of frame ``index`` of an enhanced multi-frame image (functional groups)."""

    def lookup(sequence: str, keyword: str) -> Any:
        for group in (fg, shared):
            items = element_value(group, sequence)
            if items and keyword in items[0]:
                return element_value(items[0], keyword)
        return element_value(ds, keyword)

    def required(sequence: str, keyword: str, size: int) -> list[float]:
        value = lookup(sequence, keyword)
        if value is None or len(value) != size:
            raise DicomError(f"frame {index + 1} has no valid {keyword} ({sequence})", path)
        return [float(v) for v in value]

    return Frame(
        path=path,
        index=index,
        position=_vec3(required("PlanePositionSequence", "ImagePositionPatient", 3)),
        orientation=_vec6(required("PlaneOrientationSequence", "ImageOrientationPatient", 6)),
        pixel_spacing=_vec2(required("PixelMeasuresSequence", "PixelSpacing", 2)),
        rows=int_value(ds, "Rows", 0),
        columns=int_value(ds, "Columns", 0),
        slope=_number(lookup("PixelValueTransformationSequence", "RescaleSlope"), 1.0),
        intercept=_number(lookup("PixelValueTransformationSequence", "RescaleIntercept"), 0.0),
        sop_instance_uid=sop_instance_uid(ds),
        multi_frame=True,
        dimensions=enhanced_dimensions(ds, fg, shared),
    )


def _frame_offsets(ds: Dataset, n_frames: int, path: Path) -> list[float]:
    """Offsets along the normal of a classic multi-frame file (RT dose, old NM/US stacks)."""
    grid = ds.get("GridFrameOffsetVector")
    if grid is not None and len(grid) == n_frames:
        return [float(v) for v in grid]
    step = ds.get("SpacingBetweenSlices")
    if step is not None and float(step) > 0:
        return [i * float(step) for i in range(n_frames)]
    raise DicomError(
        f"multi-frame file with {n_frames} frames gives no per-frame positions "
        "(no functional groups, GridFrameOffsetVector or SpacingBetweenSlices)",
        path,
    )


def sort_frames(frames: Sequence[Frame]) -> list[Frame]:
    """Return the frames in ascending order along the first frame's slice normal."""
    if not frames:
        return []
    normal = frames[0].normal
    return sorted(frames, key=lambda f: (float(np.dot(normal, f.position)), str(f.path), f.index))


def slice_steps(frames: Sequence[Frame]) -> np.ndarray:
    """Distances (mm) between consecutive sorted frames, measured along the slice normal."""
    if len(frames) < 2:
        return np.zeros(0)
    normal = frames[0].normal
    along = np.array([float(np.dot(normal, f.position)) for f in frames])
    return np.diff(along)


def median_slice_spacing(frames: Sequence[Frame]) -> float | None:
    """Median distance between sorted slices along the normal, or None for fewer than 2."""
    steps = slice_steps(frames)
    return float(np.median(steps)) if steps.size else None


def check_frames(frames: Sequence[Frame], where: Path, *, allow_irregular: bool = False) -> None:
    """Check that sorted frames form one regular 3D grid.

    Args:
        frames: Frames sorted by :func:`sort_frames`.
        where: The folder or file the series came from, named in errors.
        allow_irregular: Accept uneven steps and gaps (the grid then uses the median step).

    Raises:
        DicomError: On too few slices, mixed orientation, size or pixel spacing, duplicate
            positions, missing slices or uneven spacing.
    """
    if len(frames) < 2:
        raise DicomError(
            "is a single 2D image; a 3D volume needs at least 2 slices "
            "(point to the folder holding the whole series) or a multi-frame file",
            where,
        )
    _check_same_plane_layout(frames, where)
    steps = slice_steps(frames)
    _check_duplicates(frames, steps, where)
    if not allow_irregular:
        _check_regular(frames, steps, where)


def _check_same_plane_layout(frames: Sequence[Frame], where: Path) -> None:
    """Every frame as the first: orientation, size and pixel spacing (first misfit named)."""
    first = frames[0]
    orientations = np.array([f.orientation for f in frames], dtype=np.float64)
    sizes = np.array([(f.rows, f.columns) for f in frames])
    spacings = np.array([f.pixel_spacing for f in frames], dtype=np.float64)
    bad_orientation = np.max(np.abs(orientations - orientations[0]), axis=1) > ORIENTATION_TOLERANCE
    bad_size = np.any(sizes != sizes[0], axis=1)
    bad_spacing = ~np.all(np.abs(spacings - spacings[0]) <= 1e-4, axis=1)
    misfits = np.flatnonzero(bad_orientation | bad_size | bad_spacing)
    if not misfits.size:
        return
    k = int(misfits[0])
    f = frames[k]
    if bad_orientation[k]:
        raise DicomError(
            f"mixed slice orientation in one series: {_name(first)} is "
            f"{_fmt(first.orientation)} but {_name(f)} is {_fmt(f.orientation)}",
            where,
        )
    if bad_size[k]:
        raise DicomError(
            f"mixed image sizes in one series: {_name(first)} is {first.rows}x"
            f"{first.columns} but {_name(f)} is {f.rows}x{f.columns} (rows x columns)",
            where,
        )
    raise DicomError(
        f"mixed pixel spacing in one series: {_name(first)} has "
        f"{_fmt(first.pixel_spacing)} mm but {_name(f)} has {_fmt(f.pixel_spacing)} mm",
        where,
    )


def _check_duplicates(frames: Sequence[Frame], steps: np.ndarray, where: Path) -> None:
    dup = np.flatnonzero(np.abs(steps) < DUPLICATE_MM)
    if dup.size:
        a, b = frames[int(dup[0])], frames[int(dup[0]) + 1]
        raise DicomError(
            f"duplicate slice positions: {_name(a)} and {_name(b)} are both at "
            f"{_fmt(a.position)} mm ({dup.size} repeated position(s) in all); the series may "
            "hold several phases or echoes, or a file is duplicated",
            where,
        )


def _check_regular(frames: Sequence[Frame], steps: np.ndarray, where: Path) -> None:
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    if gaps.size:
        k = int(gaps[0])
        raise DicomError(
            f"missing slices: a gap of {steps[k]:.3g} mm between {_name(frames[k])} and "
            f"{_name(frames[k + 1])} (after slice {k + 1} of {len(frames)}), where the "
            f"usual step is {median:.3g} mm; allow_irregular (--allow-irregular) reads it anyway",
            where,
        )
    tolerance = SPACING_TOLERANCE_MM + SPACING_TOLERANCE_REL * median
    worst = int(np.argmax(np.abs(steps - median)))
    if abs(steps[worst] - median) > tolerance:
        raise DicomError(
            f"uneven slice spacing: steps range {steps.min():.4g}..{steps.max():.4g} mm "
            f"(median {median:.4g} mm, worst between {_name(frames[worst])} and "
            f"{_name(frames[worst + 1])}); allow_irregular (--allow-irregular) reads it "
            "with the median step",
            where,
        )
    _check_straight_stack(frames, steps, where)


def _check_straight_stack(frames: Sequence[Frame], steps: np.ndarray, where: Path) -> None:
    """Slices must also line up sideways (a constant in-plane shift, as with gantry tilt, is ok)."""
    positions = np.array([f.position for f in frames])
    step = (positions[-1] - positions[0]) / (len(frames) - 1)
    expected = positions[0] + np.outer(np.arange(len(frames)), step)
    off = np.linalg.norm(positions - expected, axis=1)
    worst = int(np.argmax(off))
    if off[worst] > SPACING_TOLERANCE_MM + SPACING_TOLERANCE_REL * float(np.median(steps)):
        raise DicomError(
            f"slice positions do not lie on a straight line: {_name(frames[worst])} is "
            f"{off[worst]:.3g} mm off; allow_irregular (--allow-irregular) reads it anyway",
            where,
        )


def ras_affine(frames: Sequence[Frame], *, allow_irregular: bool = False) -> np.ndarray:
    """Return the voxel -> RAS mm affine of sorted, checked frames.

    Columns: row direction * column spacing (index i), column direction * row spacing
    (index j), and the slice step vector (index k): the mean step from first to last slice,
    or the median step vector when ``allow_irregular``. LPS is turned into RAS by negating x, y.

    Args:
        frames: At least two frames, sorted by :func:`sort_frames`.
        allow_irregular: Use the median step vector instead of the mean one.
    """
    first = frames[0]
    o = np.asarray(first.orientation, dtype=np.float64)
    row_spacing, col_spacing = first.pixel_spacing
    positions = np.array([f.position for f in frames], dtype=np.float64)
    if allow_irregular:
        step = np.median(np.diff(positions, axis=0), axis=0)
    else:
        step = (positions[-1] - positions[0]) / (len(frames) - 1)
    lps = np.eye(4)
    lps[:3, 0] = o[:3] * col_spacing
    lps[:3, 1] = o[3:] * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _required(ds: Dataset, keyword: str, size: int, path: Path) -> list[float]:
    text = ascii_values(ds, keyword)
    if text is not None and len(text) == size:
        try:
            return [float(v) for v in text]
        except ValueError:
            pass  # pydicom's conversion below names the problem as it always did
    value = ds.get(keyword)
    if value is None or len(value) != size:
        raise DicomError(f"has no valid {keyword} (header incomplete or not a 3D image)", path)
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise DicomError(f"has a malformed {keyword}: {value!r}", path) from None


def _top_number(ds: Dataset, keyword: str, default: float) -> float:
    text = ascii_values(ds, keyword)
    if text is not None and len(text) == 1:
        try:
            return float(text[0])
        except ValueError:
            pass
    return _number(element_value(ds, keyword), default)


def _number(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _vec2(v: Sequence[float]) -> tuple[float, float]:
    return (float(v[0]), float(v[1]))


def _vec3(v: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _vec6(v: Sequence[float]) -> tuple[float, float, float, float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4]), float(v[5]))


def _name(frame: Frame) -> str:
    return f"{frame.path.name} frame {frame.index + 1}" if frame.multi_frame else frame.path.name


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
