"""DICOM series -> Volume: pick the series, check its grid, decode, rescale, build the affine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medverse.core.errors import DicomError, InputError, SeriesSelectionError
from medverse.core.volume import DicomSource, Volume
from medverse.io.dicom.geometry import Frame, check_frames, ras_affine
from medverse.io.dicom.pixels import read_stack, rescale
from medverse.io.dicom.scan import FolderScan, SeriesInfo, describe_folder
from medverse.io.nifti import is_nifti_path, read_nifti, write_nifti


def read_series(
    path: str | Path, series_uid: str | None = None, *, allow_irregular: bool = False
) -> Volume:
    """Read one DICOM image series (a folder of slices or one multi-frame file) as a Volume.

    Slices are sorted along the slice normal, so oblique series come out right; RescaleSlope
    and RescaleIntercept are applied (float32 when they change values, so CT is in HU);
    compressed transfer syntaxes are decoded with the installed pydicom plugins.

    Args:
        path: A folder (searched recursively) or a single, possibly multi-frame, file.
        series_uid: Which series to read when the folder holds several image series
            (a SeriesInstanceUID, or the ``key`` that :func:`scan_folder` reports).
        allow_irregular: Read series with uneven slice steps or gaps using the median step.

    Returns:
        The Volume, indexed ``[column, row, slice]``, affine in RAS mm; ``dicom`` holds the
        series, study and frame-of-reference UIDs, SOP class, modality, description, and the
        SOP instance UIDs and files in k order; never patient names or IDs.

    Raises:
        InputError: If the path does not exist.
        SeriesSelectionError: If several image series are present and none was chosen.
        DicomError: If there is no image series, or the series or a file is inconsistent,
            truncated or undecodable (the message names the folder or file).
    """
    path = Path(path)
    scan = describe_folder(path)
    series = select_series(scan, series_uid)
    _refuse_damaged(scan, series)
    frames = list(series.frames)
    if not frames:
        raise DicomError(series.problem or "holds no image frames")
    try:
        check_frames(frames, path, allow_irregular=allow_irregular)
    except DicomError:
        _refuse_multi_volume(series, path)
        raise
    array = rescale(read_stack(frames), frames)
    return volume_of_frames(
        array.transpose(2, 1, 0), frames, series, path, allow_irregular=allow_irregular
    )


def volume_of_frames(
    array: np.ndarray,
    frames: Sequence[Frame],
    series: SeriesInfo,
    path: Path,
    *,
    allow_irregular: bool = False,
) -> Volume:
    """A Volume of sorted frames' voxels (x, y, z order) with its affine and DICOM source.

    Args:
        array: The voxels, already rescaled, axes x, y, z.
        frames: The frames the voxels came from, sorted along z.
        series: The series they belong to.
        path: The folder or file read (recorded as the source).
        allow_irregular: Accept uneven slice spacing (mean spacing in the affine).
    """
    return Volume(
        array=array,
        affine=ras_affine(frames, allow_irregular=allow_irregular),
        meta={"source": str(path)},
        dicom=DicomSource(
            series_instance_uid=series.series_uid,
            study_instance_uid=series.study_uid,
            frame_of_reference_uid=series.frame_of_reference_uid,
            sop_class_uid=series.sop_class_uid,
            sop_instance_uids=tuple(f.sop_instance_uid for f in frames),
            files=tuple(f.path for f in frames),
            modality=series.modality,
            series_description=series.description,
        ),
    )


def _refuse_multi_volume(series: SeriesInfo, path: Path) -> None:
    """Name the volumes of a series that holds several (a 3D reader must not pick one)."""
    from medverse.io.dicom.volumes import volumes_summary  # volumes reads through this module

    summary = volumes_summary(series)
    if summary is not None:
        raise DicomError(
            f"holds {summary}, not one 3D volume: choose one with --volume K (1-based, in "
            "that order; `medverse segment` and `medverse convert` take it), or convert them "
            "all to a 4D NIfTI with `medverse convert`",
            path,
        )


def select_series(scan: FolderScan, series_uid: str | None = None) -> SeriesInfo:
    """Return the image series to read from a scan.

    Args:
        scan: What :func:`describe_folder` found.
        series_uid: A SeriesInstanceUID or series ``key``; None picks the only image series.

    Raises:
        SeriesSelectionError: If several image series are present and none was chosen.
        DicomError: If the named series is absent or not an image, or there is no image series.
    """
    images = [s for s in scan.series if s.is_image]
    if series_uid:
        matches = [s for s in scan.series if series_uid in (s.key, s.series_uid)]
        if not matches:
            listing = "; ".join(s.choice() for s in scan.series) or "no series"
            raise DicomError(f"holds no series {series_uid} (found: {listing})", scan.path)
        if not matches[0].is_image:
            raise DicomError(
                f"series {series_uid} is a {matches[0].modality or 'non-image'} object, "
                "not an image volume",
                scan.path,
            )
        return matches[0]
    if len(images) == 1:
        return images[0]
    if len(images) > 1:
        raise SeriesSelectionError(scan.path, [s.choice() for s in images])
    raise DicomError(_nothing_to_read(scan), scan.path)


def _nothing_to_read(scan: FolderScan) -> str:
    if scan.damaged:
        first = scan.damaged[0]
        return f"no readable image series; {first.path.name}: {first.reason}"
    if scan.series and scan.path.is_file():
        return f"is a {scan.series[0].modality or 'non-image'} object, not an image volume"
    if scan.series:
        kinds = sorted({s.modality or "unknown" for s in scan.series})
        return f"holds no image series, only non-image objects ({', '.join(kinds)})"
    if scan.path.is_file():
        return "is not a DICOM file"
    if scan.skipped:
        return f"holds no DICOM files ({len(scan.skipped)} non-DICOM file(s) skipped)"
    return "is empty: no files found"


def _refuse_damaged(scan: FolderScan, series: SeriesInfo) -> None:
    """A damaged file that may belong to the chosen series makes the read unsafe."""
    for bad in scan.damaged:
        if bad.series_uid in ("", series.series_uid):
            raise DicomError(bad.reason, bad.path)


def read_image(
    path: str | Path,
    series_uid: str | None = None,
    *,
    allow_irregular: bool = False,
    volume: int | None = None,
) -> Volume:
    """Read a NIfTI file or a DICOM series (folder or file) as a Volume.

    Args:
        path: A ``.nii``/``.nii.gz`` file, a DICOM folder or a DICOM file.
        series_uid: For DICOM, which series to read (see :func:`read_series`).
        allow_irregular: For DICOM, accept uneven slice spacing (median step).
        volume: For a multi-volume DICOM series (phases, echoes, b-values, mosaics), read
            volume K (1-based, as ``medverse info`` lists them); without it such a series is
            refused, naming its volumes.

    Raises:
        InputError: If the path does not exist or cannot be read (subclasses name the format),
            or the series has no volume K.
    """
    path = Path(path)
    if path.is_file() and is_nifti_path(path):
        if series_uid or volume is not None:
            raise InputError("--series and --volume apply to DICOM input, not NIfTI", path)
        return read_nifti(path)
    if volume is not None:
        from medverse.io.dicom.volumes import read_volume  # volumes reads through this module

        return read_volume(path, volume, series_uid)
    return read_series(path, series_uid, allow_irregular=allow_irregular)


def convert_to_nifti(
    source: str | Path,
    target: str | Path,
    series_uid: str | None = None,
    *,
    allow_irregular: bool = False,
) -> Volume:
    """Convert a DICOM series or NIfTI file to NIfTI, keeping the affine; written atomically.

    Args:
        source: A DICOM folder or file, or a NIfTI file.
        target: The ``.nii`` or ``.nii.gz`` file to write. On any failure it is left as it was.
        series_uid: Which DICOM series to convert when the folder holds several.
        allow_irregular: Accept uneven DICOM slice spacing (median step).

    Returns:
        The Volume that was written.

    Raises:
        InputError: If the target is not a NIfTI path or is a folder, or the source is bad.
    """
    target = Path(target)
    if not is_nifti_path(target):
        raise InputError("output must end in .nii or .nii.gz", target)
    if target.is_dir():
        raise InputError("output is a folder; give a .nii.gz file name", target)
    volume = read_image(source, series_uid, allow_irregular=allow_irregular)
    write_nifti(volume, target)
    return volume
