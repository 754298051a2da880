"""`medverse train` and `medverse evaluate` from the command line, bad input included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medverse.cli.main import main
from tests.training.conftest import copy_msd_subset, tiny_cli_flags


def _rewrite_label(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    image = nib.load(path)
    array = change(np.asarray(image.dataobj).copy())
    nib.save(nib.Nifti1Image(array.astype(np.uint8), image.affine), path)


def _missing_file(root: Path) -> str:
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][1]["image"] = "./imagesTr/hippocampus_999.nii.gz"
    (root / "dataset.json").write_text(json.dumps(meta))
    return "hippocampus_999"


def _unknown_label(root: Path) -> str:
    def add_five(a: np.ndarray) -> np.ndarray:
        a[0, 0, 0] = 5
        return a

    _rewrite_label(root / "labelsTr" / "hippocampus_003.nii.gz", add_five)
    return "hippocampus_003"


def _shape_mismatch(root: Path) -> str:
    _rewrite_label(root / "labelsTr" / "hippocampus_004.nii.gz", lambda a: a[:, :, :-1])
    return "hippocampus_004"


@pytest.mark.parametrize("breaks", [_missing_file, _unknown_label, _shape_mismatch])
def test_bad_datasets_fail_in_one_line_naming_the_case_before_training(
    breaks: Callable[[Path], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = copy_msd_subset(tmp_path / "data", n_cases=3)
    case = breaks(dataset)
    run_dir = tmp_path / "run"
    code = main(["train", str(dataset), "--out", str(run_dir), *tiny_cli_flags()])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert case in lines[0] and lines[0].startswith("medverse train: error:")
    assert "Traceback" not in err
    assert not run_dir.exists()


def test_train_then_evaluate_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = copy_msd_subset(tmp_path / "data")
    run_dir = tmp_path / "run"
    assert main(["train", str(dataset), "--out", str(run_dir), *tiny_cli_flags()]) == 0
    out = capsys.readouterr().out
    assert "epochs completed: 2" in out and "checkpoint_last.pt" in out

    ev = tmp_path / "eval"
    argv = [
        "evaluate",
        "--model", str(run_dir / "checkpoint_last.pt"),
        "--data", str(dataset / "dataset.json"),
        "--out", str(ev),
        "--split", str(run_dir / "split.json"),
        "--overlap", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads((ev / "summary.json").read_text())
    assert f"mean Dice: {summary['dice_mean']:.4f} over 2 cases" in out
    assert (ev / "metrics_per_case.csv").is_file() and (ev / "dice_boxplot.png").is_file()


def test_gpus_without_cuda_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    dataset = copy_msd_subset(tmp_path / "data", n_cases=3)
    flags = [f for f in tiny_cli_flags() if f not in ("--device", "cpu")]
    code = main(["train", str(dataset), "--out", str(tmp_path / "run"), *flags, "--gpus", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA device" in err
