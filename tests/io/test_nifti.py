from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medverse.core.errors import NiftiError
from medverse.io.nifti import read_nifti, read_nifti_labels, write_nifti
from tests.conftest import CT_LABELS, HIPPOCAMPUS


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
