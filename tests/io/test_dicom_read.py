"""read_series on every real image series: voxels and geometry agree with SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medverse.core.errors import DicomError
from medverse.io.dicom import read_series, scan_folder
from medverse.io.dicom.scan import SeriesInfo
from tests.conftest import CT_SERIES, DCMQI, SHARED_DATA
from tests.io.dicom_helpers import CT_3SLICE, T1POST

# (folder under shared/data, SeriesDescription): every image series under dicom_*.
IMAGE_SERIES = [
    ("dicom_ct_series_totalsegmentator", "CT Body 3.0"),
    ("dicom_mr_study_brain", "T1post"),
    ("dicom_mr_study_brain", "T1pre_reg"),
    ("dicom_mr_study_brain", "FLAIR_reg"),
    ("dicom_mr_study_brain", "T2_reg"),
    ("dicom_mr_study_brain", "HippoCrop"),
    ("dicom_seg_sr_dcmqi", ""),  # ct_3slice
    ("dicom_rtstruct_phantom", "PHANTOM_EXAMPLE"),
]
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _series(folder: str, description: str) -> SeriesInfo:
    found = [s for s in scan_folder(SHARED_DATA / folder) if s.is_image]
    (match,) = [s for s in found if s.description == description]
    return match


def test_the_list_above_is_every_image_series_in_the_shared_data() -> None:
    # dicom_vendor_samples (4D, mosaic, vendor quirks) is issue 13's; test_dicom_header reads it.
    found = {
        (folder.name, s.description)
        for folder in sorted(SHARED_DATA.glob("dicom_*"))
        if folder.name != "dicom_vendor_samples"
        for s in scan_folder(folder)
        if s.is_image
    }
    assert found == set(IMAGE_SERIES)


@pytest.mark.parametrize(("folder", "description"), IMAGE_SERIES)
def test_voxels_and_affine_match_simpleitk(folder: str, description: str) -> None:
    sitk = pytest.importorskip("SimpleITK")
    series = _series(folder, description)
    volume = read_series(SHARED_DATA / folder, series.key)

    reader = sitk.ImageSeriesReader()
    series_dir = str(series.files[0].parent)
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(series_dir, series.series_uid))
    image = reader.Execute()
    expected = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()

    assert volume.shape == expected.shape
    assert np.array_equal(volume.array, expected)
    np.testing.assert_allclose(volume.affine, LPS_TO_RAS @ lps, atol=1e-3)


def test_each_slice_sits_at_its_files_image_position() -> None:
    """Independent of SimpleITK: voxel (0, 0, k) is the first pixel of source file k (RAS)."""
    volume = read_series(T1POST)  # oblique: ~10.8 degree tilt
    assert volume.dicom is not None
    for k, name in enumerate(volume.dicom.files):
        ds = pydicom.dcmread(name, stop_before_pixels=True)
        lps = np.array([float(v) for v in ds.ImagePositionPatient])
        ras = lps * [-1, -1, 1]
        np.testing.assert_allclose(volume.index_to_world(np.array([0, 0, k])), ras, atol=1e-4)
    normal = np.cross(volume.affine[:3, 0], volume.affine[:3, 1])
    k_axis = volume.affine[:3, 2]
    cos = np.dot(normal, k_axis) / np.linalg.norm(normal) / np.linalg.norm(k_axis)
    assert cos == pytest.approx(1.0, abs=1e-6)
    assert volume.spacing == pytest.approx((0.6875, 0.6875, 6.5), abs=1e-4)


def test_jpeg2000_ct_comes_out_in_hounsfield_units_with_full_meta() -> None:
    volume = read_series(CT_SERIES)
    assert volume.array.dtype == np.float32
    assert float(volume.array.min()) == -1024.0
    assert float(volume.array.max()) == 1839.0
    source = volume.dicom
    assert source is not None
    # the dataset-level SOPClassUID is empty in these files: the file meta one is used
    assert source.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert source.modality == volume.modality == "CT"
    assert source.series_description == "CT Body 3.0"
    assert source.frame_of_reference_uid.startswith("1.3.12.2.1107.5.1.4.60064")
    assert len(source.files) == len(source.sop_instance_uids) == 20
    assert all(uid.startswith("1.3.12.2.1107") for uid in source.sop_instance_uids)
    z = [pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2] for f in source.files]
    assert z == sorted(z)  # k runs along the slice normal (+z for axial)
    for key in ("PatientName", "PatientID", "patient_name", "patient_id"):
        assert key not in volume.meta


def test_integer_mr_without_rescale_keeps_its_stored_dtype() -> None:
    assert read_series(T1POST).array.dtype == np.uint16
    flair = SHARED_DATA / "dicom_mr_study_brain" / "36468-FLAIRreg-58706"
    assert read_series(flair).array.dtype == np.int16  # slope 1, intercept 0: no float copy


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("folder", [CT_3SLICE, T1POST], ids=["enhanced_ct", "enhanced_mr_oblique"])
def test_enhanced_multiframe_file_reads_like_its_source_slices(
    folder: Path, tmp_path: Path
) -> None:
    hd = pytest.importorskip("highdicom")
    sources = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    modality = sources[0].Modality
    convert = {
        "CT": hd.legacy.LegacyConvertedEnhancedCTImage,
        "MR": hd.legacy.LegacyConvertedEnhancedMRImage,
    }[modality]
    enhanced = convert(
        sources,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    target = tmp_path / "enhanced.dcm"
    enhanced.save_as(target)

    expected = read_series(folder)
    volume = read_series(target)
    assert volume.shape == expected.shape
    assert np.array_equal(volume.array, expected.array)
    np.testing.assert_allclose(volume.affine, expected.affine, atol=1e-6)
    assert volume.dicom is not None
    assert volume.dicom.files == (target,) * len(sources)
    assert volume.dicom.sop_class_uid.endswith((".1.2.2", ".1.4.4"))  # legacy converted


def test_folder_with_ct_and_rtstruct_reads_the_ct_without_asking() -> None:
    volume = read_series(SHARED_DATA / "dicom_rtstruct_phantom")
    assert volume.modality == "CT"
    assert volume.shape == (512, 512, 2)
    assert volume.spacing[2] == pytest.approx(5.0)


def test_segmentation_object_is_not_read_as_a_volume() -> None:
    with pytest.raises(DicomError, match="SEG object, not an image volume") as info:
        read_series(DCMQI / "liver_seg.dcm")
    assert "liver_seg.dcm" in str(info.value)
