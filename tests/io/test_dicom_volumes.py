"""Multi-volume classic series (issue 13, item 1): volumes grouped by dimension attributes."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medverse.core.errors import InputError
from medverse.io.dicom import read_image, read_series
from medverse.io.dicom.volumes import read_volumes
from tests.io.dicom_helpers import VENDOR_SAMPLES

PHILIPS_4D = VENDOR_SAMPLES / "philips_fmri_4d"


def _dcm2niix(folder: Path, out: Path) -> nib.Nifti1Image:
    tool = shutil.which("dcm2niix")
    if tool is None:
        pytest.skip("dcm2niix not installed (Debian dcm2niix: make system-deps)")
    # -p n: the display value (RescaleSlope/Intercept), as medverse reads it
    run = [tool, "-p", "n", "-z", "y", "-f", "ref", "-o", str(out), str(folder)]
    subprocess.run(run, check=True, capture_output=True)
    image = nib.load(out / "ref.nii.gz")
    assert isinstance(image, nib.Nifti1Image)
    return image


def test_philips_4d_splits_by_temporal_position_and_equals_dcm2niix(tmp_path: Path) -> None:
    volumes = read_volumes(PHILIPS_4D)
    assert [(v.attribute, v.value) for v in volumes] == [
        ("TemporalPositionIdentifier", str(t)) for t in (1, 2, 3)
    ]
    ours = nib.Nifti1Image(
        np.stack([v.volume.array for v in volumes], axis=-1), volumes[0].volume.affine
    )
    ref = _dcm2niix(PHILIPS_4D, tmp_path)
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(ref.affine), nib.orientations.io_orientation(ours.affine)
    )
    ref = ref.as_reoriented(transform)
    assert ref.shape == ours.shape == (64, 64, 9, 3)
    assert np.allclose(ref.affine, ours.affine, atol=0.01)
    # dcm2niix -p n writes the display values rounded to int16; ours agree within 2e-4
    assert np.allclose(np.asarray(ref.dataobj, dtype=np.float64), ours.get_fdata(), atol=1e-3)


def test_a_single_volume_series_is_one_volume_equal_to_read_series() -> None:
    folder = VENDOR_SAMPLES / "ge_mprage_iop_jitter"
    (only,) = read_volumes(folder)
    assert only.attribute == ""
    assert np.array_equal(only.volume.array, read_series(folder).array)


def test_volume_k_of_a_single_volume_series_says_it_is_one_volume() -> None:
    with pytest.raises(InputError, match=r"--volume 2: the series is one 3D volume"):
        read_image(VENDOR_SAMPLES / "ge_mprage_iop_jitter", volume=2)


def test_jpeg_lossless_sample_converts_equal_to_dcm2niix(tmp_path: Path) -> None:
    """The shared JPEG Lossless (.70) sample: same voxels and affine as dcm2niix's."""
    folder = VENDOR_SAMPLES / "jpeg_lossless"
    ours = read_series(folder)
    ref = _dcm2niix(folder, tmp_path)
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(ref.affine), nib.orientations.io_orientation(ours.affine)
    )
    ref = ref.as_reoriented(transform)
    assert ref.shape == ours.shape == (86, 86, 8)
    assert np.allclose(ref.affine, ours.affine, atol=0.01)
    assert np.array_equal(np.asarray(ref.dataobj), ours.array)


MOSAIC = VENDOR_SAMPLES / "siemens_mosaic_epi"


def _reoriented_like(ref: nib.Nifti1Image, affine: np.ndarray) -> nib.Nifti1Image:
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(ref.affine), nib.orientations.io_orientation(affine)
    )
    return ref.as_reoriented(transform)


def test_siemens_mosaic_unpacks_to_4d_equal_to_dcm2niix(tmp_path: Path) -> None:
    """Two mosaic files of 6x6 tiles: 35 slices each, tile positions corrected as dcm2niix."""
    volumes = read_volumes(MOSAIC)
    assert [(v.attribute, v.value) for v in volumes] == [
        ("AcquisitionNumber", "1"),
        ("AcquisitionNumber", "2"),
    ]
    ours = np.stack([v.volume.array for v in volumes], axis=-1)
    ref = _reoriented_like(_dcm2niix(MOSAIC, tmp_path), volumes[0].volume.affine)
    assert ref.shape == ours.shape == (64, 64, 35, 2)
    assert np.abs(ref.affine - volumes[0].volume.affine).max() < 0.01
    assert np.array_equal(np.asarray(ref.dataobj), ours)


def test_one_mosaic_file_reads_as_a_3d_volume() -> None:
    first = sorted(MOSAIC.iterdir())[0]
    volume = read_series(first)
    assert volume.shape == (64, 64, 35)
    assert np.allclose(volume.spacing, (3.25, 3.25, 3.6), atol=1e-4)
    assert np.array_equal(volume.array, read_volumes(MOSAIC)[0].volume.array)


@pytest.fixture(scope="module")
def enhanced_4d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Philips 4D sample as one Legacy Converted Enhanced MR file (highdicom, 27 frames)."""
    import highdicom
    import pydicom
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    sources = [pydicom.dcmread(f) for f in sorted(PHILIPS_4D.iterdir())]
    with warnings.catch_warnings():  # highdicom's name check would quote the patient name
        warnings.simplefilter("ignore", UserWarning)
        image = LegacyConvertedEnhancedMRImage(
            sources,
            series_instance_uid=highdicom.UID(),
            series_number=99,
            sop_instance_uid=highdicom.UID(),
            instance_number=1,
        )
    path = tmp_path_factory.mktemp("enhanced") / "philips_4d_enhanced.dcm"
    image.save_as(path)
    return path


def test_enhanced_multiframe_4d_splits_like_its_classic_source(
    enhanced_4d: Path, tmp_path: Path
) -> None:
    """27 frames in one file: 3 volumes by the per-frame TemporalPositionIdentifier."""
    ours = read_volumes(enhanced_4d)
    classic = read_volumes(PHILIPS_4D)
    assert [(v.attribute, v.value) for v in ours] == [(v.attribute, v.value) for v in classic]
    for mine, theirs in zip(ours, classic):
        assert np.array_equal(mine.volume.array, theirs.volume.array)
        assert np.allclose(mine.volume.affine, theirs.volume.affine, atol=1e-4)
    # dcm2niix (v1.0.20220720) on this file takes the frames in file order (the temporal
    # position is only in the unassigned converted attributes) and mixes slices and times;
    # it reads the classic source right, so that is the reference.
    ref = _dcm2niix(PHILIPS_4D, tmp_path)
    stacked = np.stack([v.volume.array for v in ours], axis=-1)
    ref = _reoriented_like(ref, ours[0].volume.affine)
    assert ref.shape == stacked.shape == (64, 64, 9, 3)
    assert np.abs(ref.affine - ours[0].volume.affine).max() < 0.01
    assert np.allclose(np.asarray(ref.dataobj, dtype=np.float64), stacked, atol=1e-3)


def test_enhanced_volumes_split_by_the_b_value_of_the_diffusion_group(
    enhanced_4d: Path, tmp_path: Path
) -> None:
    """Frames told apart only by MRDiffusionSequence > DiffusionBValue (per-frame groups)."""
    import pydicom
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(enhanced_4d)
    for group in ds.PerFrameFunctionalGroupsSequence:
        unassigned = group.UnassignedPerFrameConvertedAttributesSequence[0]
        time = int(unassigned.TemporalPositionIdentifier)
        del unassigned.TemporalPositionIdentifier
        diffusion = Dataset()
        diffusion.DiffusionBValue = [0.0, 1000.0, 2000.0][time - 1]
        diffusion.DiffusionDirectionality = "ISOTROPIC"
        group.MRDiffusionSequence = [diffusion]
    ds.save_as(tmp_path / "dwi.dcm")
    volumes = read_volumes(tmp_path / "dwi.dcm")
    assert [(v.attribute, v.value) for v in volumes] == [
        ("DiffusionBValue", b) for b in ("0.0", "1000.0", "2000.0")
    ]
    classic = read_volumes(PHILIPS_4D)
    assert all(np.array_equal(a.volume.array, b.volume.array) for a, b in zip(volumes, classic))


def test_read_image_reads_the_chosen_volume_and_refuses_a_missing_one() -> None:
    from medverse.core.errors import InputError
    from medverse.io.dicom import read_image

    second = read_image(PHILIPS_4D, volume=2)
    assert np.array_equal(second.array, read_volumes(PHILIPS_4D)[1].volume.array)
    assert second.dicom is not None and len(second.dicom.sop_instance_uids) == 9
    with pytest.raises(InputError, match=r"holds volumes 1\.\.3"):
        read_image(PHILIPS_4D, volume=4)
