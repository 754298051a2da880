"""Report measurements on real label maps: exact volumes, RAS boxes and centroids, JSON, no PHI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medverse.core.volume import DicomSource, LabelMap
from medverse.inference.report import measure, read_report, write_report
from medverse.io.nifti import read_nifti_labels
from tests.conftest import CT_LABELS, HIPPOCAMPUS

HIPPO_NAMES = {1: "Anterior", 2: "Posterior"}


@pytest.fixture(scope="module")
def hippo_labels() -> LabelMap:
    return read_nifti_labels(HIPPOCAMPUS / "labelsTr" / "hippocampus_001.nii.gz", HIPPO_NAMES)


@pytest.fixture(scope="module")
def ct_labels() -> LabelMap:
    return read_nifti_labels(CT_LABELS, {1: "spleen", 5: "liver", 52: "aorta"})


def _voxel_of(labels: LabelMap, point_mm: tuple[float, float, float]) -> tuple[int, int, int]:
    ijk = np.linalg.inv(labels.affine) @ np.array([*point_mm, 1.0])
    i, j, k = np.rint(ijk[:3]).astype(int)
    return int(i), int(j), int(k)


def test_volumes_are_voxel_count_times_voxel_volume_exactly(ct_labels: LabelMap) -> None:
    report = measure(ct_labels)
    assert ct_labels.voxel_volume_ml == pytest.approx(0.9765625**2 * 2.0 / 1000)
    for s in report.structures:
        assert s.voxel_count == int(np.sum(ct_labels.array == s.value))
        assert s.volume_ml == s.voxel_count * ct_labels.voxel_volume_ml
    liver = report.structure("liver")
    assert liver is not None and 500 < liver.volume_ml < 1000  # 20 slices through a liver


def test_every_present_label_is_reported_named_or_not(ct_labels: LabelMap) -> None:
    report = measure(ct_labels)
    assert [s.value for s in report.structures] == ct_labels.present_labels()
    assert len(report.structures) == 31
    assert report.structure("aorta") is not None
    assert {s.name for s in report.structures if s.value == 63} == {"label_63"}
    assert report.absent == []


def test_boxes_are_ras_extremes_of_voxel_centres(ct_labels: LabelMap) -> None:
    """The CT labels' affine flips x; the box must still hold min <= max in RAS mm."""
    report = measure(ct_labels)
    for s in report.structures:
        world = ct_labels.index_to_world(np.argwhere(ct_labels.array == s.value))
        assert np.allclose(s.bbox_min_mm, world.min(axis=0))
        assert np.allclose(s.bbox_max_mm, world.max(axis=0))
        assert np.allclose(s.centroid_mm, world.mean(axis=0))


def test_oblique_affine_boxes_and_centroids(hippo_labels: LabelMap) -> None:
    angle = np.deg2rad(20)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.0, 1.5])
    affine[:3, 3] = [-30.0, 12.0, 100.0]
    oblique = LabelMap(hippo_labels.array, affine, labels=hippo_labels.labels)
    report = measure(oblique)
    for s in report.structures:
        world = oblique.index_to_world(np.argwhere(oblique.array == s.value))
        assert np.allclose(s.bbox_min_mm, world.min(axis=0))
        assert np.allclose(s.bbox_max_mm, world.max(axis=0))
        assert s.volume_ml == s.voxel_count * oblique.voxel_volume_ml
        assert s.volume_ml == pytest.approx(s.voxel_count * 0.8 * 1.0 * 1.5 / 1000, rel=1e-12)


def test_centroid_inside_box_and_inside_the_structure(
    hippo_labels: LabelMap, ct_labels: LabelMap
) -> None:
    for labels, names in ((hippo_labels, ("Anterior", "Posterior")), (ct_labels, ("liver",))):
        report = measure(labels)
        for name in names:
            s = report.structure(name)
            assert s is not None
            box = zip(s.bbox_min_mm, s.centroid_mm, s.bbox_max_mm)
            assert all(lo <= c <= hi for lo, c, hi in box)
            assert labels.array[_voxel_of(labels, s.centroid_mm)] == s.value


def test_absent_labels_are_listed(hippo_labels: LabelMap) -> None:
    only_one = hippo_labels.with_array(np.where(hippo_labels.array == 2, 0, hippo_labels.array))
    report = measure(LabelMap.from_volume(only_one, HIPPO_NAMES))
    assert [s.name for s in report.structures] == ["Anterior"]
    assert report.absent == ["Posterior"]


def test_json_round_trip_and_no_identifying_metadata(
    hippo_labels: LabelMap, tmp_path: Path
) -> None:
    meta = {"patient_name": "DOE^JOHN", "source": "/data/DOE_JOHN"}
    dicom = DicomSource(
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        frame_of_reference_uid="",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
        sop_instance_uids=("1.2.3.4",),
        files=(Path("/data/DOE_JOHN/1.dcm"),),
        modality="MR",
    )
    labels = LabelMap(
        hippo_labels.array, hippo_labels.affine, meta, hippo_labels.labels, dicom=dicom
    )
    path = write_report(measure(labels), tmp_path / "report.json")
    text = path.read_text()
    assert "DOE" not in text and "1.2.3.4" not in text
    assert json.loads(text)["study"] == {"modality": "MR", "series_uid": "1.2.3"}
    again = read_report(path)
    assert again == measure(labels)
    assert again.structures[0].volume_ml == again.structures[0].voxel_count * 0.001
    assert list(tmp_path.iterdir()) == [path]  # atomic write leaves no temp file
