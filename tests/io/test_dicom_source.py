"""Volume.dicom: read_series fills it, write_seg references it, highdicom reads the SEG back."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medverse.core.errors import InputError
from medverse.core.volume import LabelMap, Volume
from medverse.io.dicom import read_series
from medverse.io.nifti import read_nifti, write_nifti
from medverse.io.seg import write_seg
from tests.io.dicom_helpers import T1POST


@pytest.fixture(scope="module")
def t1() -> Volume:
    return read_series(T1POST)  # oblique MR with its own UIDs


def _labels(volume: Volume) -> LabelMap:
    array = np.zeros(volume.shape, dtype=np.uint8)
    array[100:180, 120:200, 5:12] = 1
    array[60:90, 60:90, 8:20] = 2
    return LabelMap(array, volume.affine, {}, labels={1: "left_thing", 2: "right_thing"})


def test_read_series_fills_the_source_from_the_files(t1: Volume) -> None:
    source = t1.dicom
    assert source is not None
    assert len(source.files) == len(source.sop_instance_uids) == t1.shape[2]
    first = pydicom.dcmread(source.files[0], stop_before_pixels=True)
    assert source.series_instance_uid == first.SeriesInstanceUID
    assert source.study_instance_uid == first.StudyInstanceUID
    assert source.frame_of_reference_uid == first.FrameOfReferenceUID
    assert source.sop_instance_uids[0] == first.SOPInstanceUID
    assert (source.modality, source.series_description) == ("MR", "T1post")
    assert t1.modality == "MR"
    assert t1.with_array(t1.array * 0).dicom == source  # same grid, same source


def test_seg_from_the_source_reads_back_onto_its_grid_with_highdicom(
    t1: Volume, tmp_path: Path
) -> None:
    labels = _labels(t1)
    path = write_seg(labels, t1, tmp_path / "seg.dcm", segmentation_type="BINARY")
    source = t1.dicom
    assert source is not None
    seg = hd.seg.segread(path)
    assert seg.FrameOfReferenceUID == source.frame_of_reference_uid
    assert seg.StudyInstanceUID == source.study_instance_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.series_instance_uid
    planes = seg.get_pixels_by_source_instance(
        list(source.sop_instance_uids), combine_segments=True, relabel=False
    )
    assert planes.shape == (t1.shape[2], t1.shape[1], t1.shape[0])
    for k in range(t1.shape[2]):
        assert np.array_equal(planes[k], labels.array[:, :, k].T)


def test_a_volume_without_a_dicom_source_cannot_be_written_as_seg(
    t1: Volume, tmp_path: Path
) -> None:
    write_nifti(t1, tmp_path / "t1.nii.gz")
    nifti = read_nifti(tmp_path / "t1.nii.gz")
    assert nifti.dicom is None and nifti.modality == ""
    with pytest.raises(InputError, match="read it with read_series"):
        write_seg(_labels(nifti), nifti, tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()
