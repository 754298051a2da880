"""``medverse segment`` on the real CT DICOM series and hippocampus NIfTI, and its failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medverse.cli.main import main
from medverse.io.nifti import read_nifti_labels, write_nifti
from medverse.io.seg_read import read_seg
from tests.conftest import CT_SERIES, HIPPOCAMPUS
from tests.inference.helpers import (
    dice,
    fitted_ct_checkpoint,
    hippo_checkpoint,  # noqa: F401  (fixture)
    hippo_plan,
    read_ct,
    read_hippo,
    untrained_checkpoint,
)

BUNDLE = ["labels.nii.gz", "meshes.glb", "overview.png", "report.json", "seg.dcm"]


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    checkpoint = str(fitted_ct_checkpoint())
    out = tmp_path_factory.mktemp("ct") / "out"
    assert main(["segment", str(CT_SERIES), "--model", checkpoint, "--out", str(out)]) == 0
    return out, checkpoint


def test_ct_dicom_writes_the_whole_bundle(ct_run: tuple[Path, str]) -> None:
    out, _ = ct_run
    assert sorted(p.name for p in out.iterdir()) == BUNDLE
    ct, reference = read_ct()
    labels = read_nifti_labels(out / "labels.nii.gz")
    assert labels.shape == ct.shape and np.allclose(labels.affine, ct.affine)
    assert set(np.unique(labels.array)) <= {0, 1, 5}
    assert dice(labels.array == 5, reference.array == 5) > 0.8  # liver, model fitted at 8 mm
    seg = pydicom.dcmread(out / "seg.dcm")
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert ct.dicom is not None
    assert {r.ReferencedSOPInstanceUID for r in referenced} == set(ct.dicom.sop_instance_uids)
    report = json.loads((out / "report.json").read_text())
    for s in report["structures"]:
        assert s["voxel_count"] == int(np.sum(labels.array == s["value"]))
        assert s["volume_ml"] == s["voxel_count"] * labels.voxel_volume_ml
    assert report["model"]["preset"] == "unet_small"


def test_binary_seg_for_older_viewers_holds_the_same_structures(
    ct_run: tuple[Path, str], tmp_path: Path
) -> None:
    default_out, checkpoint = ct_run
    assert pydicom.dcmread(default_out / "seg.dcm").SegmentationType == "LABELMAP"
    out = tmp_path / "out"
    command = ["segment", str(CT_SERIES), "--model", checkpoint, "--out", str(out)]
    assert main([*command, "--seg-type", "binary"]) == 0
    assert pydicom.dcmread(out / "seg.dcm").SegmentationType == "BINARY"
    ct, _ = read_ct()
    labels = read_nifti_labels(out / "labels.nii.gz")
    from_seg = read_seg(out / "seg.dcm", reference=ct)
    report = json.loads((out / "report.json").read_text())
    by_name = {s["name"]: s["value"] for s in report["structures"]}
    assert sorted(from_seg.labels.values()) == sorted(by_name) == ["liver", "spleen"]
    for number, name in from_seg.labels.items():  # BINARY renumbers the segments 1..n
        assert np.array_equal(from_seg.array == number, labels.array == by_name[name])


def test_nifti_of_the_same_ct_gives_the_same_labels(
    ct_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dicom_out, checkpoint = ct_run
    ct, _ = read_ct()
    image = write_nifti(ct, tmp_path / "ct.nii.gz")
    out = tmp_path / "out"
    assert main(["segment", str(image), "--model", checkpoint, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [n for n in BUNDLE if n != "seg.dcm"]
    a = read_nifti_labels(out / "labels.nii.gz")
    b = read_nifti_labels(dicom_out / "labels.nii.gz")
    assert np.array_equal(a.array, b.array) and np.allclose(a.affine, b.affine)
    printed = capsys.readouterr().out
    assert "liver:" in printed and f"wrote {out / 'overview.png'}" in printed


@pytest.mark.slow
def test_hippocampus_nifti_with_a_fitted_model(
    hippo_checkpoint: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    image = HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz"
    code = main(["segment", str(image), "--model", str(hippo_checkpoint), "--out", str(tmp_path)])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [n for n in BUNDLE if n != "seg.dcm"]
    _, reference = read_hippo()
    labels = read_nifti_labels(tmp_path / "labels.nii.gz")
    assert labels.shape == reference.shape and np.array_equal(labels.affine, reference.affine)
    for value in (1, 2):
        assert dice(labels.array == value, reference.array == value) > 0.7


def test_a_bad_checkpoint_fails_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"this is not a checkpoint")
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("kept")
    image = HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz"
    code = main(["segment", str(image), "--model", str(bad), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "checkpoint" in err[0]
    assert [p.name for p in out.iterdir()] == ["earlier.txt"]
    fresh = tmp_path / "fresh"
    assert main(["segment", str(image), "--model", str(bad), "--out", str(fresh)]) == 2
    assert not fresh.exists()


def test_an_mr_model_refuses_a_ct_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = untrained_checkpoint(hippo_plan(), tmp_path / "mr.pt")
    out = tmp_path / "out"
    assert main(["segment", str(CT_SERIES), "--model", str(model), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image is CT but the model was trained on MR" in err[0]
    assert not out.exists()


def test_help_states_the_cost_of_each_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "8x the compute" in text
    for option in ("--series UID", "--device", "--overlap F", "--tta"):
        assert option in text
