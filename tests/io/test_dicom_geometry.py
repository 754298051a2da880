"""Series consistency checks on edited copies of a real series: each problem is named."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medverse.core.errors import DicomError
from medverse.io.dicom import read_series, scan_folder
from tests.io.dicom_helpers import (
    HIPPO_CROP,
    T1POST,
    copy_files,
    copy_series,
    edit_header,
    hippo_slice,
)


@pytest.fixture
def crop(tmp_path: Path) -> Path:
    """A copy of the 40-slice HippoCrop MR series (z = 1..40 mm, 1 mm steps)."""
    folder = tmp_path / "crop"
    copy_series(HIPPO_CROP, folder)
    return folder


def test_missing_slice_is_reported_with_where_it_is(crop: Path) -> None:
    (crop / "20.dcm").unlink()
    with pytest.raises(DicomError, match="missing slices") as info:
        read_series(crop)
    message = str(info.value)
    assert str(crop) in message
    assert "19.dcm" in message and "21.dcm" in message
    assert "2 mm" in message


def test_allow_irregular_reads_a_gapped_series_with_the_median_step(crop: Path) -> None:
    (crop / "20.dcm").unlink()
    volume = read_series(crop, allow_irregular=True)
    assert volume.shape[2] == 39
    assert volume.spacing[2] == pytest.approx(1.0)


def test_uneven_spacing_is_refused_unless_allowed(crop: Path) -> None:
    edit_header(crop / "10.dcm", ImagePositionPatient=[0, 0, 10.3])
    with pytest.raises(DicomError, match="uneven slice spacing") as info:
        read_series(crop)
    assert "10.dcm" in str(info.value)
    volume = read_series(crop, allow_irregular=True)
    assert volume.shape[2] == 40
    assert volume.spacing[2] == pytest.approx(1.0)


def test_mixed_orientation_is_refused(crop: Path) -> None:
    edit_header(crop / "7.dcm", ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    with pytest.raises(DicomError, match="mixed slice orientation") as info:
        read_series(crop)
    assert "7.dcm" in str(info.value) and str(crop) in str(info.value)


def test_mixed_rows_and_columns_are_refused(crop: Path) -> None:
    edit_header(crop / "12.dcm", Rows=48)
    with pytest.raises(DicomError, match="mixed image sizes") as info:
        read_series(crop)
    assert "12.dcm" in str(info.value)


def test_duplicate_positions_are_refused(crop: Path) -> None:
    edit_header(crop / "15.dcm", ImagePositionPatient=[0, 0, 16])
    with pytest.raises(DicomError, match="duplicate slice positions") as info:
        read_series(crop)
    assert "15.dcm" in str(info.value) and "16.dcm" in str(info.value)


def test_single_slice_folder_is_not_a_volume(tmp_path: Path) -> None:
    copy_files([hippo_slice(5)], tmp_path)
    with pytest.raises(DicomError, match="single 2D image") as info:
        read_series(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_file_names_do_not_decide_the_slice_order(tmp_path: Path) -> None:
    files = sorted(T1POST.iterdir())
    names = [f"IMG{n:04d}" for n in range(len(files))]
    random.Random(7).shuffle(names)
    for src, name in zip(files, names, strict=True):
        (tmp_path / name).write_bytes(src.read_bytes())
    shuffled, original = read_series(tmp_path), read_series(T1POST)
    assert np.array_equal(shuffled.array, original.array)
    np.testing.assert_allclose(shuffled.affine, original.affine, atol=1e-9)


def test_sheared_stack_keeps_the_step_vector_from_the_positions(crop: Path) -> None:
    """Gantry-tilt-like data: each slice shifts 0.2 mm in y; the affine must follow it."""
    for z in range(1, 41):
        edit_header(crop / f"{z}.dcm", ImagePositionPatient=[0, 0.2 * z, z])
    volume = read_series(crop)
    for k in (0, 17, 39):
        lps = np.array([0.0, 0.2 * (k + 1), k + 1.0])
        np.testing.assert_allclose(volume.index_to_world(np.array([0, 0, k])), lps * [-1, -1, 1])


def test_scan_reports_the_problem_without_raising(crop: Path) -> None:
    (crop / "20.dcm").unlink()
    (series,) = scan_folder(crop)
    assert series.is_image
    assert series.problem is not None and "missing slices" in series.problem


def test_missing_image_position_names_the_file(crop: Path) -> None:
    ds = pydicom.dcmread(crop / "9.dcm")
    del ds.ImagePositionPatient
    ds.save_as(crop / "9.dcm")
    with pytest.raises(DicomError, match="has no valid ImagePositionPatient") as info:
        read_series(crop)
    assert str(crop / "9.dcm") in str(info.value)


def test_rescale_is_applied_slice_by_slice(crop: Path) -> None:
    edit_header(crop / "5.dcm", RescaleSlope=2.5, RescaleIntercept=-10)
    plain = read_series(HIPPO_CROP)
    volume = read_series(crop)
    assert volume.array.dtype == np.float32
    k = 4  # 5.dcm is at z = 5 mm, the fifth slice
    np.testing.assert_array_equal(volume.array[..., k], plain.array[..., k] * 2.5 - 10)
    np.testing.assert_array_equal(volume.array[..., k + 1], plain.array[..., k + 1])
