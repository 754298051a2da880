"""Multi-volume series: frames at repeated positions split into volumes by dimension attributes.

The standard's own attributes are tried in order (temporal position, echo, diffusion
b-value/direction, then trigger/acquisition number and time as fallback), for classic
single-frame slices, Siemens mosaic tiles and enhanced multi-frame frames alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medverse.core.errors import DicomError, InputError
from medverse.core.volume import Volume
from medverse.io.atomic import write_text_atomic
from medverse.io.dicom.dimensions import DIMENSION_ATTRIBUTES
from medverse.io.dicom.geometry import Frame, check_frames, sort_frames
from medverse.io.dicom.pixels import read_stack, rescale
from medverse.io.dicom.scan import SeriesInfo, describe_folder
from medverse.io.dicom.series import select_series, volume_of_frames
from medverse.io.nifti import is_nifti_path, write_nifti, write_nifti_array

__all__ = [
    "SeriesVolume",
    "convert_volumes",
    "group_volumes",
    "is_multi_volume",
    "read_volume",
    "read_volumes",
    "volumes_summary",
]


_DIFFUSION = ("DiffusionBValue", "DiffusionGradientOrientation")
_ACQUISITION = ("AcquisitionNumber", "FrameAcquisitionDateTime", "AcquisitionTime")


@dataclass(frozen=True)
class SeriesVolume:
    """One volume of a multi-volume series.

    Attributes:
        attributes: The dimension attributes that tell the volumes apart (() for one volume);
            a diffusion series has b-value and gradient direction together.
        values: Their values for this volume, as text, in the same order.
        volume: The 3D volume.
    """

    attributes: tuple[str, ...]
    values: tuple[str, ...]
    volume: Volume

    @property
    def attribute(self) -> str:
        """The attributes as one name ("" for one volume), e.g. ``DiffusionBValue+...``."""
        return "+".join(self.attributes)

    @property
    def value(self) -> str:
        """The values as one text, "/" between them."""
        return "/".join(self.values)


def group_volumes(frames: Sequence[Frame]) -> tuple[tuple[str, ...], list[list[Frame]]]:
    """Split single-frame slices into volumes by the first dimension attributes that work.

    A diffusion series (gradient directions present) is split by b-value and direction
    together, in acquisition order, with the acquisition number or time breaking ties (two
    b=0 volumes); other series by the first single attribute that works, in ascending order.

    Returns:
        The attributes (() when the frames are one volume) and the frames of each volume.

    Raises:
        DicomError: If no dimension attribute splits them into volumes of distinct positions.
    """
    if _distinct_positions(frames):
        return (), [list(frames)]
    rows = [dict(zip(DIMENSION_ATTRIBUTES, _dimension_values(frame))) for frame in frames]
    for names in _candidates(rows):
        groups: dict[tuple[str, ...], list[Frame]] = {}
        for frame, row in zip(frames, rows):
            groups.setdefault(tuple(row[n] for n in names), []).append(frame)
        sizes = {len(g) for g in groups.values()}
        if len(groups) > 1 and len(sizes) == 1 and all(map(_distinct_positions, groups.values())):
            order = _ACQUISITION if names[0] == _DIFFUSION[0] else ()
            ordered = sorted(groups.items(), key=lambda item: _group_order(item, order))
            return names, [sort_frames(group) for _, group in ordered]
    raise DicomError(
        "frames repeat slice positions and no dimension attribute "
        f"({', '.join(DIMENSION_ATTRIBUTES)}) splits them into whole volumes",
        frames[0].path.parent,
    )


def _candidates(rows: Sequence[dict[str, str]]) -> list[tuple[str, ...]]:
    """The attribute sets tried in turn: diffusion pairs first when directions are present."""
    singles: list[tuple[str, ...]] = [(name,) for name in DIMENSION_ATTRIBUTES]
    if not any(_is_gradient(row[_DIFFUSION[1]]) for row in rows):
        return singles  # not diffusion weighted (fMRI and others write a zero vector or nothing)
    return [_DIFFUSION, *((*_DIFFUSION, name) for name in _ACQUISITION), *singles]


def _is_gradient(direction: str) -> bool:
    """True for a DiffusionGradientOrientation value that is a direction (not zero, not empty)."""
    try:
        return any(float(v) != 0.0 for v in direction.split("\\") if v.strip())
    except ValueError:
        return False


def _group_order(
    item: tuple[tuple[str, ...], list[Frame]], acquisition: tuple[str, ...]
) -> tuple[tuple[float, str], ...]:
    """Sort key of a volume: its first acquisition values (diffusion), then its own values."""
    key, frames = item
    first = dict(zip(DIMENSION_ATTRIBUTES, _dimension_values(frames[0])))
    return tuple(_sort_key(v) for v in (*(first[n] for n in acquisition), *key))


def read_volumes(path: str | Path, series_uid: str | None = None) -> list[SeriesVolume]:
    """Read every volume of a (possibly multi-volume) DICOM series.

    Classic single-frame slices, Siemens mosaics (one file per volume) and enhanced
    multi-frame files go through the same grouping; each file is decoded once.

    Args:
        path: A folder holding the series, or one (multi-frame or mosaic) file.
        series_uid: Which series, when the folder holds several.

    Returns:
        One entry per volume, in order of the dimension attribute; all on one grid.

    Raises:
        DicomError: If the frames cannot be grouped into volumes on one grid.
    """
    path = Path(path)
    series = select_series(describe_folder(path), series_uid)
    if not series.frames:
        raise DicomError(series.problem or "holds no image frames", path)
    attributes, groups = group_volumes(list(series.frames))
    for group in groups:
        check_frames(group, path)
    ordered = [frame for group in groups for frame in group]
    stack = rescale(read_stack(ordered), ordered)
    result, start = [], 0
    for group in groups:
        array = stack[start : start + len(group)].transpose(2, 1, 0)
        start += len(group)
        volume = volume_of_frames(array, group, series, path)
        result.append(SeriesVolume(attributes, _values(group[0], attributes), volume))
    if any(not np.allclose(v.volume.affine, result[0].volume.affine, atol=1e-3) for v in result):
        raise DicomError("the volumes of the series lie on different grids", path)
    return result


def read_volume(path: str | Path, volume: int, series_uid: str | None = None) -> Volume:
    """Read volume ``volume`` (1-based, as ``medverse info`` lists them) of a DICOM series.

    Raises:
        InputError: If the series has no such volume (the message gives the range).
        DicomError: If the series cannot be grouped into volumes on one grid.
    """
    volumes = read_volumes(path, series_uid)
    _check_volume(volume, len(volumes), Path(path))
    return volumes[volume - 1].volume


def _check_volume(volume: int, count: int, source: Path) -> None:
    """Refuse a volume number the series does not have, saying which it has."""
    if 1 <= volume <= count:
        return
    if count == 1:
        raise InputError(
            f"--volume {volume}: the series is one 3D volume (leave --volume out, or give 1)",
            source,
        )
    raise InputError(f"--volume {volume}: the series holds volumes 1..{count}", source)


def _distinct_positions(frames: Sequence[Frame]) -> bool:
    rounded = np.round(np.array([f.position for f in frames], dtype=np.float64), 3)
    return len({tuple(row) for row in rounded.tolist()}) == len(frames)


def _values(frame: Frame, attributes: tuple[str, ...]) -> tuple[str, ...]:
    row = dict(zip(DIMENSION_ATTRIBUTES, _dimension_values(frame)))
    return tuple(row[name] for name in attributes)


def _dimension_values(frame: Frame) -> tuple[str, ...]:
    return frame.dimensions or ("",) * len(DIMENSION_ATTRIBUTES)


def _sort_key(value: str) -> tuple[float, str]:
    try:
        return (float(value), value)
    except ValueError:
        return (float("inf"), value)


def convert_volumes(
    source: str | Path,
    target: str | Path,
    series_uid: str | None = None,
    *,
    volume: int | None = None,
) -> list[SeriesVolume]:
    """Write a multi-volume series as one 4D NIfTI (with a sidecar JSON), or volume K as 3D.

    The sidecar (``target`` with ``.json`` instead of ``.nii[.gz]``) names each volume's
    dimension attribute and value, in the order of the fourth axis.

    Args:
        source: The DICOM folder.
        target: The ``.nii`` or ``.nii.gz`` file; written atomically, as is the sidecar.
        series_uid: Which series, when the folder holds several.
        volume: Write only this volume (1-based, as ``medverse info`` lists them).

    Returns:
        The volumes written.

    Raises:
        InputError: If ``volume`` is out of range or the target is not a NIfTI path.
        DicomError: If the series cannot be grouped into volumes on one grid.
    """
    target = Path(target)
    if not is_nifti_path(target):
        raise InputError("output must end in .nii or .nii.gz", target)
    volumes = read_volumes(source, series_uid)
    if volume is not None:
        _check_volume(volume, len(volumes), Path(source))
        volumes = [volumes[volume - 1]]
    if len(volumes) == 1:
        write_nifti(volumes[0].volume, target)
        return volumes
    array = np.stack([v.volume.array for v in volumes], axis=-1)
    write_nifti_array(array, volumes[0].volume.affine, target)
    sidecar = {
        "dimension_attribute": volumes[0].attribute,
        "volumes": [
            {"index": i + 1, **dict(zip(v.attributes, v.values))} for i, v in enumerate(volumes)
        ],
    }
    name = target.name.removesuffix(".gz").removesuffix(".nii") + ".json"
    write_text_atomic(target.with_name(name), json.dumps(sidecar, indent=2) + "\n")
    return volumes


def is_multi_volume(path: str | Path, series_uid: str | None = None) -> bool:
    """True for a DICOM folder whose chosen series repeats slice positions (several volumes)."""
    path = Path(path)
    if is_nifti_path(path):
        return False
    frames = select_series(describe_folder(path), series_uid).frames
    return bool(frames) and not _distinct_positions(frames)


def volumes_summary(series: SeriesInfo) -> str | None:
    """One line on the volumes of a series that repeats positions, or None if it does not split.

    Args:
        series: An image series from :func:`medverse.io.dicom.describe_folder`.
    """
    frames = list(series.frames)
    if not frames or _distinct_positions(frames):
        return None
    try:
        attributes, groups = group_volumes(frames)
    except DicomError:
        return None
    values = ", ".join("/".join(_values(group[0], attributes)) for group in groups)
    by = "+".join(attributes)
    return f"{len(groups)} volumes of {len(groups[0])} slices by {by} ({values})"
