from pathlib import Path

import numpy as np
import pytest

from medverse.core.volume import DicomSource, LabelMap, Volume


def test_spacing_and_voxel_volume_follow_the_affine() -> None:
    affine = np.diag([-0.8, 0.7, 2.5, 1.0])
    volume = Volume(np.zeros((4, 5, 6), np.float32), affine)
    assert volume.spacing == pytest.approx((0.8, 0.7, 2.5))
    assert volume.voxel_volume_ml == pytest.approx(0.8 * 0.7 * 2.5 / 1000)


def test_index_to_world_applies_rotation_and_origin() -> None:
    affine = np.array([[0, -1, 0, 10], [1, 0, 0, 20], [0, 0, 2, 30], [0, 0, 0, 1]], float)
    volume = Volume(np.zeros((3, 3, 3)), affine)
    assert volume.index_to_world(np.array([1, 2, 3])) == pytest.approx([8, 21, 36])


def test_labelmap_refuses_float_arrays_and_lists_present_labels() -> None:
    with pytest.raises(ValueError, match="integer"):
        LabelMap(np.zeros((2, 2, 2), np.float32), np.eye(4))
    array = np.zeros((3, 3, 3), np.uint8)
    array[0, 0, 0], array[1, 1, 1] = 2, 5
    assert LabelMap(array, np.eye(4), labels={2: "a", 5: "b"}).present_labels() == [2, 5]


def test_volume_rejects_non_3d_arrays() -> None:
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((2, 2)), np.eye(4))


def _source(n: int, files: int) -> DicomSource:
    return DicomSource(
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        frame_of_reference_uid="1.2.4",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uids=tuple(f"1.2.3.{k}" for k in range(n)),
        files=tuple(Path(f"/data/{k}.dcm") for k in range(files)),
        modality="CT",
    )


def test_dicom_source_is_typed_and_travels_with_the_grid() -> None:
    volume = Volume(np.zeros((2, 2, 3)), np.eye(4), {"source": "/data"}, dicom=_source(3, 3))
    assert volume.modality == "CT" and Volume(np.zeros((2, 2, 2)), np.eye(4)).modality == ""
    labels = LabelMap.from_volume(volume.with_array(np.zeros((2, 2, 3), np.uint8)), {1: "a"})
    assert labels.dicom == volume.dicom and labels.meta == {"source": "/data"}
    with pytest.raises(ValueError, match="one file per SOP instance"):
        _source(3, 2)
