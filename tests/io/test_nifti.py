from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medverse.core.errors import NiftiError
from medverse.io.nifti import read_nifti, read_nifti_labels, write_nifti
from tests.conftest import CT_LABELS, HIPPOCAMPUS, SHARED_DATA


def test_round_trip_keeps_voxels_and_affine(tmp_path: Path) -> None:
    source = HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz"
    volume = read_nifti(source)
    out = write_nifti(volume, tmp_path / "copy.nii.gz")
    again = read_nifti(out)
    assert np.array_equal(again.array, volume.array)
    assert np.allclose(again.affine, nib.load(source).affine)


def test_label_map_of_the_real_ct_reads_as_integers() -> None:
    labels = read_nifti_labels(CT_LABELS)
    assert labels.array.dtype == np.uint8
    assert len(labels.present_labels()) == 31


def test_wrong_suffix_is_refused_before_writing(tmp_path: Path) -> None:
    volume = read_nifti(HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz")
    with pytest.raises(Exception, match=r"\.nii"):
        write_nifti(volume, tmp_path / "out.png")
    assert not any(tmp_path.iterdir())


def test_non_nifti_bytes_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(b"not an image at all" * 10)
    with pytest.raises(NiftiError) as info:
        read_nifti(bad)
    assert str(bad) in info.value.one_line()


def _corrupt_header(tmp_path: Path, offset: int, value: bytes) -> Path:
    """Copy a real hippocampus image uncompressed and overwrite header bytes."""
    image = nib.load(HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz")
    plain = tmp_path / "case.nii"
    nib.save(image, plain)
    data = bytearray(plain.read_bytes())
    data[offset : offset + len(value)] = value
    plain.write_bytes(bytes(data))
    return plain


@pytest.mark.parametrize(
    ("offset", "value"),
    [
        (70, (999).to_bytes(2, "little")),  # datatype code no reader knows
        (42, (30000).to_bytes(2, "little") * 3),  # dims far larger than the file
    ],
    ids=["garbage-datatype", "huge-dimensions"],
)
def test_broken_headers_give_one_clear_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], offset: int, value: bytes
) -> None:
    broken = _corrupt_header(tmp_path, offset, value)
    with pytest.raises(NiftiError) as info:
        read_nifti(broken)
    assert str(broken) in info.value.one_line()
    assert capfd.readouterr().err == ""


EXAMPLE_CT = SHARED_DATA / "totalsegmentator_example_ct" / "example_ct.nii.gz"


def _variants(tmp_path: Path) -> list[Path]:
    """The real example CT as written by nibabel: NIfTI-1, NIfTI-2, big-endian, scaled."""
    image = nib.load(EXAMPLE_CT)
    array = np.asanyarray(image.dataobj)
    nifti2 = tmp_path / "ct_nifti2.nii.gz"
    nib.save(nib.Nifti2Image(array, image.affine, image.header), nifti2)
    big = tmp_path / "ct_big_endian.nii.gz"
    swapped = image.header.as_byteswapped(">")
    nib.save(nib.Nifti1Image(array.astype(">i2"), image.affine, swapped), big)
    scaled = tmp_path / "ct_scaled.nii.gz"
    header = image.header.copy()
    header.set_data_dtype(np.int16)
    header.set_slope_inter(0.5, -1024.0)
    values = array.astype(np.float32) * 0.5 - 1024.0
    nib.save(nib.Nifti1Image(values, image.affine, header), scaled)
    return [EXAMPLE_CT, nifti2, big, scaled]


def test_gzip_reads_give_nibabels_voxels_and_affine(tmp_path: Path) -> None:
    for path in _variants(tmp_path):
        expected = nib.load(path)
        volume = read_nifti(path)
        assert np.array_equal(volume.array, np.asanyarray(expected.dataobj)), path.name
        assert volume.array.dtype == expected.dataobj.dtype or path.name == "ct_scaled.nii.gz"
        np.testing.assert_allclose(volume.affine, expected.affine)


def test_a_truncated_real_nifti_gz_names_the_file(tmp_path: Path) -> None:
    data = EXAMPLE_CT.read_bytes()
    for keep in (len(data) // 2, 200):  # voxels cut short; header cut short
        broken = tmp_path / f"cut_{keep}.nii.gz"
        broken.write_bytes(data[:keep])
        with pytest.raises(NiftiError) as info:
            read_nifti(broken)
        assert str(broken) in info.value.one_line()


def test_gzipped_bytes_that_are_not_nifti_name_the_file(tmp_path: Path) -> None:
    import gzip

    bad = tmp_path / "notes.nii.gz"
    bad.write_bytes(gzip.compress(b"patient notes, not an image\n" * 40))
    with pytest.raises(NiftiError, match="not a NIfTI") as info:
        read_nifti(bad)
    assert str(bad) in info.value.one_line()
