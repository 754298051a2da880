"""``medverse info`` and ``medverse convert`` on the real data."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medverse.cli.main import main
from medverse.io.dicom import read_series, scan_folder
from medverse.io.nifti import read_nifti
from tests.conftest import CT_SERIES, DCMQI, HIPPOCAMPUS, MR_STUDY, REPO


def test_info_lists_the_five_series_of_the_brain_study(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(MR_STUDY)]) == 0
    out, err = capsys.readouterr()
    assert "5 series in 1 study" in out
    for series in scan_folder(MR_STUDY):
        assert series.series_uid in out  # whole UIDs, never cut by the table
        assert series.description in out
    assert "320 x 280 x 22" in out and "50 x 34 x 40" in out
    assert "0.6875 x 0.6875 x 6.5" in out
    assert out.count("image volume") == 5
    assert "1 file(s) skipped (not DICOM)" in out  # SOURCE.md
    assert err == ""


def test_info_marks_seg_and_sr_as_non_image(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(DCMQI)]) == 0
    out, _ = capsys.readouterr()
    assert out.count("non-image object (SEG)") == 2
    assert out.count("non-image object (SR)") == 1
    assert out.count("image volume") == 1
    assert "4 file(s) skipped (not DICOM)" in out


def test_convert_dicom_keeps_voxels_and_affine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    output = tmp_path / "ct.nii.gz"
    assert main(["convert", str(CT_SERIES), str(output)]) == 0
    out, _ = capsys.readouterr()
    assert f"wrote {output}" in out and "512 x 512 x 20" in out
    expected = read_series(CT_SERIES)
    image = nib.load(str(output))
    np.testing.assert_allclose(image.affine, expected.affine, atol=1e-4)
    assert np.array_equal(np.asanyarray(image.dataobj), expected.array)
    assert int(image.header["sform_code"]) == 1


def test_convert_with_series_key_from_info(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    hippo = next(s for s in scan_folder(MR_STUDY) if s.description == "HippoCrop")
    output = tmp_path / "hippo.nii"
    assert main(["convert", str(MR_STUDY), str(output), "--series", hippo.key]) == 0
    volume = read_nifti(output)
    assert volume.shape == (34, 50, 40)
    assert volume.array.dtype == np.int16


def test_convert_nifti_to_nifti_keeps_the_affine(tmp_path: Path) -> None:
    source = HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz"
    output = tmp_path / "copy.nii.gz"
    assert main(["convert", str(source), str(output)]) == 0
    original, copy = read_nifti(source), read_nifti(output)
    np.testing.assert_allclose(copy.affine, original.affine, atol=1e-5)
    assert np.array_equal(copy.array, original.array)


def test_unknown_series_uid_lists_what_is_there(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    output = tmp_path / "x.nii.gz"
    assert main(["convert", str(MR_STUDY), str(output), "--series", "1.2.3"]) == 2
    _, err = capsys.readouterr()
    assert "holds no series 1.2.3" in err and "T1post" in err
    assert not output.exists()


PHILIPS_4D = CT_SERIES.parents[1] / "dicom_vendor_samples" / "philips_fmri_4d"


def test_convert_writes_a_multi_volume_series_as_4d_with_a_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medverse.io.dicom.volumes import read_volumes

    assert main(["convert", str(PHILIPS_4D), str(tmp_path / "fmri.nii.gz")]) == 0
    assert "64 x 64 x 9 x 3 volumes (TemporalPositionIdentifier)" in capsys.readouterr().out
    image = nib.load(tmp_path / "fmri.nii.gz")
    volumes = read_volumes(PHILIPS_4D)
    assert np.array_equal(image.get_fdata(), np.stack([v.volume.array for v in volumes], -1))
    sidecar = json.loads((tmp_path / "fmri.json").read_text())
    assert [v["TemporalPositionIdentifier"] for v in sidecar["volumes"]] == ["1", "2", "3"]
    assert main(["convert", str(PHILIPS_4D), str(tmp_path / "v2.nii.gz"), "--volume", "2"]) == 0
    assert np.array_equal(read_nifti(tmp_path / "v2.nii.gz").array, volumes[1].volume.array)


def test_convert_refuses_a_volume_the_series_lacks_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["convert", str(PHILIPS_4D), str(tmp_path / "v.nii.gz"), "--volume", "9"])
    assert code != 0 and "holds volumes 1..3" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_info_lists_the_volumes_of_a_multi_volume_series(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["info", str(PHILIPS_4D)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 volumes of 9 slices by TemporalPositionIdentifier (1, 2, 3)" in out


def test_segment_refuses_a_multi_volume_series_before_inference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    model = REPO / "models" / "hippocampus_dynunet.pt"
    code = main(["segment", str(PHILIPS_4D), "--model", str(model), "--out", str(out)])
    error = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "holds 3 volumes of 9 slices by TemporalPositionIdentifier" in error
    assert "--volume K" in error and not out.exists()


@pytest.mark.parametrize(
    ("sample", "described", "shape"),
    [
        ("ge_mprage_iop_jitter", "256 x 256 x 12", (256, 256, 12)),
        ("uih_t1_star_dates", "512 x 460 x 12", (460, 512, 12)),
        ("philips_fmri_4d", "3 volumes of 9 slices by TemporalPositionIdentifier", (64, 64, 9, 3)),
        (
            "siemens_mosaic_epi",
            "2 volumes of 35 slices by AcquisitionNumber (1, 2)",
            (64, 64, 35, 2),
        ),
        ("siemens_xa_enhanced_3d", "72 x 72 x 39", (72, 72, 39)),
        ("jpeg_lossless", "86 x 86 x 8", (86, 86, 8)),
    ],
)
def test_every_vendor_sample_is_described_by_info_and_converts(
    sample: str,
    described: str,
    shape: tuple[int, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 13's acceptance: each shared sample converts, `info` describing its volumes."""
    folder = PHILIPS_4D.parent / sample
    assert main(["info", str(folder)]) == 0
    assert described in " ".join(capsys.readouterr().out.split())
    assert main(["convert", str(folder), str(tmp_path / "out.nii.gz")]) == 0
    assert nib.load(tmp_path / "out.nii.gz").shape == shape


@pytest.mark.slow
def test_segment_runs_on_the_chosen_volume_of_a_multi_volume_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`segment --volume 2`: labels and a valid SEG on volume 2's grid and files."""
    from medverse.io.dicom import read_image
    from medverse.io.nifti import read_nifti_labels
    from medverse.io.seg import read_seg
    from tests.io.dicom_helpers import dciodvfy_errors

    out = tmp_path / "out"
    model = REPO / "models" / "hippocampus_dynunet.pt"
    command = ["segment", str(PHILIPS_4D), "--model", str(model), "--out", str(out)]
    assert main([*command, "--overlap", "0", "--volume", "2"]) == 0
    source = read_image(PHILIPS_4D, volume=2)
    labels = read_nifti_labels(out / "labels.nii.gz")
    assert labels.shape == source.shape and np.allclose(labels.affine, source.affine, atol=1e-4)
    assert np.array_equal(read_seg(out / "seg.dcm", reference=source).array, labels.array)
    assert dciodvfy_errors(out / "seg.dcm") == []


def test_segment_refuses_a_volume_the_series_lacks_before_inference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    model = REPO / "models" / "hippocampus_dynunet.pt"
    command = ["segment", str(PHILIPS_4D), "--model", str(model), "--out", str(out)]
    assert main([*command, "--volume", "4"]) != 0
    assert "holds volumes 1..3" in capsys.readouterr().err and not out.exists()
