"""``medverse export`` and the speed options of ``medverse segment`` (backend, --many, help)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medverse.cli.main import build_parser, main
from medverse.engine.cpu_isa import default_cpu_backend
from medverse.io.nifti import read_nifti_labels
from medverse.models.onnx_export import META_PLAN, META_WEIGHTS, onnx_metadata
from tests.conftest import EXAMPLES, HIPPOCAMPUS, REPO
from tests.inference.helpers import hippo_plan, untrained_checkpoint

IMAGE = EXAMPLES / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
SHIPPED = REPO / "models" / "hippocampus_dynunet.pt"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_checkpoint(hippo_plan(), tmp_path_factory.mktemp("model") / "u.pt", seed=1)


def test_segment_help_states_the_cost_of_each_option() -> None:
    parser = build_parser()
    segment = next(
        a
        for a in parser._subparsers._group_actions  # type: ignore[union-attr]
    ).choices["segment"]
    text = " ".join(segment.format_help().split())
    for needle in (
        "--overlap",
        "8x the windows of 0",
        "--tta",
        "8x the compute",
        "--skip-air",
        "-900 HU",
        "gets the same label as without it",
        "about a minute of compiling",
        "5% of the 99th percentile",
        "--backend",
        "--precision",
        "about 2x faster",
        "--many",
        "--batch-size",
    ):
        assert needle in text, needle


def test_export_of_the_shipped_model_agrees_with_eager_torch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`medverse export` on the trained model; `segment` then gives the same labels with it."""
    onnx = tmp_path / "model.onnx"
    assert main(["export", str(SHIPPED), "--onnx", str(onnx)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {onnx}" in printed and "max |logit difference|" in printed
    meta = onnx_metadata(onnx)
    assert json.loads(meta[META_PLAN])["preset"] == "dynunet"
    assert len(meta[META_WEIGHTS]) == 64
    runs = {}
    options = {  # no --backend: the CPU's default (auto), which --help names
        "torch": ["--backend", "torch"],
        "onnxruntime": ["--onnx", str(onnx)],
        default_cpu_backend(): [],
    }
    for backend, extra in options.items():
        out = tmp_path / backend
        argv = ["segment", str(IMAGE), "--model", str(SHIPPED), "--out", str(out)]
        assert main([*argv, "--device", "cpu", "--precision", "fp32", *extra]) == 0
        runs[backend] = read_nifti_labels(out / "labels.nii.gz").array
        report = json.loads((out / "report.json").read_text())
        assert report["model"]["backend"] == backend
    assert (runs["torch"] > 0).sum() > 500  # it finds the hippocampus
    for backend in options:
        assert (runs["torch"] == runs[backend]).mean() >= 0.999, backend


def test_export_of_a_missing_checkpoint_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["export", str(tmp_path / "nope.pt"), "--onnx", str(tmp_path / "x.onnx")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.pt: checkpoint file not found" in err
    assert not (tmp_path / "x.onnx").exists()


def test_segment_many_over_a_folder(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    for case in ("hippocampus_001", "hippocampus_003"):
        shutil.copyfile(HIPPOCAMPUS / "imagesTr" / f"{case}.nii.gz", studies / f"{case}.nii.gz")
    out = tmp_path / "out"
    argv = ["segment", str(studies), "--many", "--model", str(checkpoint), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--labels-only", "--skip-air"]) == 0
    printed = capsys.readouterr().out
    assert "2 of 2 studies segmented" in printed
    assert sorted(p.name for p in out.iterdir()) == ["hippocampus_001", "hippocampus_003"]
    labels = read_nifti_labels(out / "hippocampus_003" / "labels.nii.gz")
    assert (
        labels.shape == read_nifti_labels(HIPPOCAMPUS / "labelsTr" / "hippocampus_003.nii.gz").shape
    )
    assert np.isin(labels.array, [0, 1, 2]).all()


def _truncated(source: Path, target: Path, keep: float = 0.3) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


@pytest.mark.parametrize("command", ["export", "segment"])
def test_a_truncated_checkpoint_fails_in_one_line_naming_it(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = _truncated(SHIPPED, tmp_path / "broken.pt")
    out = tmp_path / "out"
    if command == "export":
        argv = ["export", str(broken), "--onnx", str(out / "x.onnx")]
    else:
        argv = ["segment", str(IMAGE), "--model", str(broken), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{broken}: not a readable checkpoint" in err
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_broken_onnx_file_fails_in_one_line_naming_it(
    damage: str, checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(onnx), "--no-check"]) == 0
    if damage == "truncated":
        broken = _truncated(onnx, tmp_path / "broken.onnx")
    else:
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(b"\x08\x07garbage, not protobuf" * 50)
    capsys.readouterr()
    out = tmp_path / "out"
    argv = ["segment", str(IMAGE), "--model", str(checkpoint), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--onnx", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{broken}: not a readable ONNX model" in err
    assert not out.exists()
    assert main([*argv, "--device", "cpu", "--backend", "torch", "--onnx", str(onnx)]) == 2
    assert "is for onnxruntime, not the torch backend" in capsys.readouterr().err
