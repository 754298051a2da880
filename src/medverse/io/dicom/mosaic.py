"""Siemens mosaic: one stored image tiling a whole volume's slices, unpacked with its geometry.

A mosaic file (ImageType holds ``MOSAIC``) stores N slices as tiles of one
``ceil(sqrt(N))``-square grid. Its ImagePositionPatient is that of the whole mosaic image,
not of the first tile: the tile's own position is corrected by half the size difference along
the row and column directions (as dcm2niix and nibabel do), and slice k lies k slice steps
along the slice normal (the CSA header's SliceNormalVector, which also gives the order).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from medverse.core.errors import DicomError
from medverse.io.dicom.geometry import Frame
from medverse.io.dicom.values import ascii_values, int_value

NUMBER_OF_IMAGES_IN_MOSAIC = Tag(0x0019, 0x100A)
"""Siemens private (0019,100A): the slices in a mosaic (creator ``SIEMENS MR HEADER``)."""


def mosaic_count(ds: Dataset, path: Path) -> int:
    """The number of slices in a Siemens mosaic image; 0 when ``ds`` is not a mosaic.

    Raises:
        DicomError: If ImageType says MOSAIC but no slice count can be found.
    """
    text = ascii_values(ds, "ImageType")
    image_type = [str(v).upper() for v in (text if text is not None else ds.get("ImageType") or [])]
    if "MOSAIC" not in image_type or int_value(ds, "NumberOfFrames", 1) != 1:
        return 0
    count = _private_count(ds) or _as_int(_csa_value(ds, "NumberOfImagesInMosaic"))
    if count < 1:
        raise DicomError(
            "is a Siemens mosaic without NumberOfImagesInMosaic ((0019,100A) or the CSA "
            "image header): its slices cannot be unpacked",
            path,
        )
    return count


def mosaic_frames(ds: Dataset, first: Frame, count: int, path: Path) -> list[Frame]:
    """The slices of a mosaic as frames (tile ``index``, tile-sized, corrected positions).

    Args:
        ds: The mosaic file's header.
        first: The file's classic frame (whole-mosaic size and position).
        count: Slices in the mosaic (:func:`mosaic_count`).
        path: The file, named in errors.

    Raises:
        DicomError: If the mosaic is not an even grid of the tile size, or no slice step.
    """
    tiles = math.ceil(math.sqrt(count))
    if first.rows % tiles or first.columns % tiles:
        raise DicomError(
            f"mosaic of {first.rows}x{first.columns} pixels does not split into "
            f"{tiles}x{tiles} tiles for {count} slices",
            path,
        )
    rows, columns = first.rows // tiles, first.columns // tiles
    o = np.asarray(first.orientation, dtype=np.float64)
    row_spacing, col_spacing = first.pixel_spacing
    shift = (
        o[3:] * row_spacing * (first.rows - rows) + o[:3] * col_spacing * (first.columns - columns)
    ) / 2
    start = np.asarray(first.position, dtype=np.float64) + shift
    normal = _slice_normal(ds, first)
    step = _slice_step(ds, path)
    return [
        replace(
            first,
            index=k,
            rows=rows,
            columns=columns,
            position=_vec3(start + k * step * normal),
            mosaic_tiles=tiles,
        )
        for k in range(count)
    ]


def untile(image: np.ndarray, frame: Frame, count: int) -> np.ndarray:
    """Cut a stored ``(rows, columns)`` mosaic image into its ``(count, tile rows, tile cols)``.

    Args:
        image: The one decoded mosaic image.
        frame: Any frame of the file (carries the tile grid and tile size).
        count: How many tiles to keep (tiles beyond the slices are blank padding).
    """
    tiles, rows, columns = frame.mosaic_tiles, frame.rows, frame.columns
    grid = image[: tiles * rows, : tiles * columns].reshape(tiles, rows, tiles, columns)
    return grid.transpose(0, 2, 1, 3).reshape(tiles * tiles, rows, columns)[:count]


def _private_count(ds: Dataset) -> int:
    element = ds.get(NUMBER_OF_IMAGES_IN_MOSAIC)
    if element is None:
        return 0
    value = element.value
    if isinstance(value, bytes):  # implicit VR files keep private values as raw bytes
        return int.from_bytes(value[:2], "little") if len(value) >= 2 else 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _as_int(value: object) -> int:
    try:
        return int(float(str(value))) if value is not None else 0
    except ValueError:
        return 0


def _csa_value(ds: Dataset, name: str) -> object:
    """One item of the Siemens CSA image header (nibabel parses it), or None."""
    from nibabel.nicom import csareader  # only mosaics need it

    try:
        header = csareader.get_csa_header(ds, "image")
        if not header:
            return None
        items = header["tags"][name]["items"]
    except (KeyError, csareader.CSAError, ValueError, TypeError):
        return None
    return items if len(items) > 1 else (items[0] if items else None)


def _slice_normal(ds: Dataset, first: Frame) -> np.ndarray:
    """The CSA SliceNormalVector (its sign gives the slice order), else row x column."""
    value = _csa_value(ds, "SliceNormalVector")
    if isinstance(value, list) and len(value) == 3:
        normal = np.asarray(value, dtype=np.float64)
        norm = float(np.linalg.norm(normal))
        if norm > 0.5:
            return normal / norm
    return first.normal


def _slice_step(ds: Dataset, path: Path) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(keyword)
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    raise DicomError("mosaic has no SpacingBetweenSlices or SliceThickness", path)


def _vec3(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))
