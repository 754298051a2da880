"""The output bundle on real data: every file readable and consistent, and all-or-nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medverse.core.errors import DicomError, InputError, MedverseError
from medverse.core.volume import LabelMap, Volume
from medverse.inference.api import export_labels
from medverse.inference.outputs import write_outputs
from medverse.io.dicom.header import read_header
from medverse.io.mesh import read_glb
from medverse.io.nifti import read_nifti_labels
from medverse.io.seg import read_seg
from tests.inference.helpers import read_ct, read_hippo

BUNDLE = ["labels.nii.gz", "meshes.glb", "overview.png", "report.json", "seg.dcm"]


@pytest.fixture(scope="module")
def hippo() -> tuple[Volume, LabelMap]:
    return read_hippo()


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_nifti_bundle_is_complete_and_consistent(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    image, labels = hippo
    result = export_labels(image, labels, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [n for n in BUNDLE if n != "seg.dcm"]
    assert result.outputs.seg is None and result.files() == result.outputs.files()
    again = read_nifti_labels(out / "labels.nii.gz")
    assert np.array_equal(again.array, labels.array)
    assert np.array_equal(again.affine, labels.affine)
    report = json.loads((out / "report.json").read_text())
    volumes = {s["name"]: s["volume_ml"] for s in report["structures"]}
    assert volumes == {"Anterior": 1.324, "Posterior": 1.624}
    meshes = read_glb(out / "meshes.glb")
    assert set(meshes) == {"Anterior", "Posterior"}
    for s in report["structures"]:
        mesh = meshes[s["name"]]
        assert mesh.volume / 1000 == pytest.approx(s["volume_ml"], rel=0.05)
        assert np.all(mesh.bounds[0] >= np.array(s["bbox_min_mm"]) - 1.0)  # RAS mm, same space
        assert np.all(mesh.bounds[1] <= np.array(s["bbox_max_mm"]) + 1.0)


def test_dicom_bundle_has_a_seg_referencing_the_source(tmp_path: Path) -> None:
    ct, labels = read_ct()
    result = export_labels(ct, labels, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == BUNDLE
    assert result.outputs.seg == tmp_path / "seg.dcm"
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.Modality == "SEG"
    assert ct.dicom is not None
    assert seg.FrameOfReferenceUID == ct.dicom.frame_of_reference_uid
    # the demo CT leaves Study/Series Instance UID empty: the SEG carries the stand-ins, never ""
    header = read_header(ct.dicom.files[0])
    assert ct.dicom.series_instance_uid == "" and header.series_uid.startswith("2.25.")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == header.series_uid
    assert seg.StudyInstanceUID == header.study_uid != ""
    referenced = {
        i.ReferencedSOPInstanceUID
        for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == set(ct.dicom.sop_instance_uids) and len(referenced) == 20
    back = read_seg(tmp_path / "seg.dcm", reference=ct)
    by_name = {name: value for value, name in back.labels.items()}
    for value, name in labels.labels.items():
        assert np.array_equal(back.array == by_name[name], labels.array == value), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["study"] == {"modality": "CT", "description": "CT Body 3.0"}  # UID is empty


def _off_grid(labels: LabelMap) -> LabelMap:
    moved = labels.affine.copy()
    moved[2, 3] += 3.0
    return LabelMap(labels.array, moved, labels=labels.labels)


def test_a_failing_writer_leaves_the_folder_as_it_was(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    """Labels off the image's grid: the overview writer fails after report and labels ran."""
    image, labels = hippo
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "report.json").write_text('{"old": true}')
    before = _listing(tmp_path)
    with pytest.raises(MedverseError):
        write_outputs(image, _off_grid(labels), tmp_path, source_is_dicom=False)
    assert _listing(tmp_path) == before  # no new, half-written or hidden temporary files


def test_a_failed_run_removes_the_folder_it_created(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    image, labels = hippo
    with pytest.raises(MedverseError):
        write_outputs(image, _off_grid(labels), tmp_path / "new" / "out", source_is_dicom=False)
    assert not (tmp_path / "new" / "out").exists()


def test_a_failing_seg_keeps_labels_and_report_and_names_the_seg(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    """A NIfTI image cannot source a DICOM SEG: the rest of the bundle is still written."""
    image, labels = hippo
    with pytest.raises(DicomError, match=r"seg\.dcm: DICOM SEG not written") as failure:
        write_outputs(image, labels, tmp_path, source_is_dicom=True)
    assert "labels.nii.gz" in str(failure.value) and "report.json" in str(failure.value)
    assert read_nifti_labels(tmp_path / "labels.nii.gz").present_labels() == [1, 2]
    assert json.loads((tmp_path / "report.json").read_text())["structures"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.nii.gz", "meshes.glb", "overview.png", "report.json"
    ]  # fmt: skip


def test_labels_off_the_image_grid_are_refused(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    image, labels = hippo
    moved = labels.affine.copy()
    moved[2, 3] += 3.0
    with pytest.raises(InputError, match="not on the image's grid"):
        export_labels(image, LabelMap(labels.array, moved, labels=labels.labels), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_nothing_found_writes_labels_report_and_overview_only(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    image, labels = hippo
    (tmp_path / "meshes.glb").write_bytes(b"stale from an earlier run")
    empty = LabelMap(np.zeros_like(labels.array), labels.affine, labels=labels.labels)
    result = export_labels(image, empty, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.nii.gz",
        "overview.png",
        "report.json",
    ]
    assert result.outputs.meshes is None
    assert result.report.structures == [] and result.report.absent == ["Anterior", "Posterior"]


def test_an_output_path_that_is_a_file_is_refused(
    hippo: tuple[Volume, LabelMap], tmp_path: Path
) -> None:
    image, labels = hippo
    target = tmp_path / "out"
    target.write_text("a file")
    with pytest.raises(InputError, match="is a file, not a folder"):
        export_labels(image, labels, target)
    assert target.read_text() == "a file"
