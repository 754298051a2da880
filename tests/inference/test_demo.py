import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
import trimesh

from medverse.cli.main import main
from medverse.inference.demo import (
    CT_DEMO_MODEL,
    CT_DICOM,
    CT_REFERENCE,
    default_examples_dir,
    dice_by_name,
    reference_labels_on,
    run_demo,
)
from medverse.io.dicom import read_series
from medverse.io.nifti import read_nifti_labels
from medverse.io.seg import read_seg
from medverse.models.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run_demo(out)
    return out / "ct"


def test_vendored_examples_are_small_and_licensed() -> None:
    examples = default_examples_dir()
    size = sum(p.stat().st_size for p in examples.rglob("*") if p.is_file())
    assert size < 10 * 1024 * 1024
    assert "Apache-2.0" in (examples / "README.md").read_text()


def test_demo_labels_overlay_the_dicom_series_exactly(demo: Path) -> None:
    ct = read_series(default_examples_dir() / "ct_abdomen" / "dicom")
    labels = read_nifti_labels(demo / "labels.nii.gz")
    assert labels.shape == ct.shape
    assert np.allclose(labels.affine, ct.affine, atol=1e-4)
    seg_on_ct = read_seg(demo / "seg.dcm", reference=ct)
    assert np.array_equal(seg_on_ct.array, labels.array)
    seg = hd.seg.segread(demo / "seg.dcm")
    referenced = {
        ref.ReferencedSOPInstanceUID
        for ref in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert ct.dicom is not None and referenced == set(ct.dicom.sop_instance_uids)


def test_demo_report_meshes_and_overview_agree_with_the_labels(demo: Path) -> None:
    labels = read_nifti_labels(demo / "labels.nii.gz")
    report = json.loads((demo / "report.json").read_text())
    structures = {s["name"]: s for s in report["structures"]}
    liver = structures["liver"]
    voxel_ml = labels.voxel_volume_ml
    assert liver["voxel_count"] == int(np.count_nonzero(labels.array == liver["value"]))
    assert liver["volume_ml"] == pytest.approx(liver["voxel_count"] * voxel_ml, rel=1e-9)
    scene = trimesh.load(demo / "meshes.glb")
    assert set(scene.geometry) == set(structures)
    assert (demo / "overview.png").stat().st_size > 50_000


def test_demo_command_prints_where_outputs_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    lines = {line.strip() for line in printed.splitlines()}
    for name in ("labels.nii.gz", "seg.dcm", "meshes.glb", "report.json", "overview.png"):
        assert str(tmp_path / "ct" / name) in lines
    assert "liver" in printed


def test_demo_segments_the_held_out_hippocampus_cases_with_the_shipped_model(demo: Path) -> None:
    examples = default_examples_dir() / "hippocampus"
    cases = sorted(p.name.removesuffix(".nii.gz") for p in (examples / "labelsTr").iterdir())
    assert len(cases) == 4
    for case in cases:
        predicted = read_nifti_labels(demo.parent / "hippocampus" / case / "labels.nii.gz").array
        truth = read_nifti_labels(examples / "labelsTr" / f"{case}.nii.gz").array
        for value in (1, 2):
            overlap = np.logical_and(predicted == value, truth == value).sum()
            dice = 2 * overlap / ((predicted == value).sum() + (truth == value).sum())
            assert dice > 0.75, f"{case} label {value}: Dice {dice:.3f}"


def test_demo_segments_the_ct_with_the_shipped_demonstration_model(demo: Path) -> None:
    labels = read_nifti_labels(demo / "labels.nii.gz")
    report = json.loads((demo / "report.json").read_text())
    names = {s["name"] for s in report["structures"]}
    model = load_checkpoint(default_examples_dir().parent / CT_DEMO_MODEL)
    assert model.labels == {1: "liver", 2: "spleen", 3: "kidney", 4: "aorta"}
    assert names <= set(model.labels.values()), names  # the model's output, not the reference's
    assert set(np.unique(labels.array)) <= {0, 1, 2, 3, 4}
    seg = hd.seg.segread(demo / "seg.dcm")
    algorithms = {item.SegmentAlgorithmName for item in seg.SegmentSequence}
    assert algorithms == {model.title}  # "medverse unet_brief", not "medverse reference"


def test_the_demo_ct_model_finds_the_liver_and_spleen_of_the_demo_ct(demo: Path) -> None:
    """Another patient than the one it was fitted on, 20 slices: a demonstration, not a claim."""
    examples = default_examples_dir()
    reference = reference_labels_on(read_series(examples / CT_DICOM), examples / CT_REFERENCE)
    names = {1: "liver", 2: "spleen", 3: "kidney", 4: "aorta"}
    dice = dice_by_name(read_nifti_labels(demo / "labels.nii.gz", names), reference)
    assert dice["liver"] > 0.6 and dice["spleen"] > 0.4, dice
