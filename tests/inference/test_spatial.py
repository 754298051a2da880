"""``medverse segment --spatial-parallel N``: the real CT split over processes, same labels."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from medverse.cli.main import main
from medverse.inference.spatial import WholeVolumePredictor
from medverse.io.dicom import read_series
from medverse.io.nifti import read_nifti_labels
from medverse.models.checkpoint import load_checkpoint
from medverse.models.factory import build_network
from medverse.parallel.spatial import RankFailedError
from tests.conftest import CT_SERIES
from tests.inference.helpers import ct_plan, fit_checkpoint, read_ct

# The CT at 8 mm is 63x63x5 voxels: one 64x64x8 window is the whole volume, so the plain
# (single-process) segment of this checkpoint is whole-volume inference.
WHOLE_CT_PLAN = ct_plan((8.0, 8.0, 8.0))
BUNDLE = {"labels.nii.gz", "seg.dcm", "meshes.glb", "report.json", "overview.png"}


@pytest.fixture(scope="module")
def ct_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """unet_small after 5 steps on the CT (any network serves for identity of labels).

    A few steps make the labels smooth (liver and background): an untrained network's
    voxel noise costs minutes of mesh and SEG writing for nothing.
    """
    ct, labels = read_ct()
    path = tmp_path_factory.mktemp("ckpt") / "ct.pt"
    return fit_checkpoint(ct, labels, WHOLE_CT_PLAN, path, steps=5, lr=1e-2)


def _segment(checkpoint: Path, out: Path, *extra: str) -> np.ndarray:
    argv = ["segment", str(CT_SERIES), "--model", str(checkpoint), "--out", str(out)]
    assert main([*argv, "--device", "cpu", *extra]) == 0
    assert {p.name for p in out.iterdir()} == BUNDLE  # the same outputs as the plain run
    return read_nifti_labels(out / "labels.nii.gz").array


@pytest.mark.dist
def test_two_processes_give_the_labels_of_single_process_whole_volume_inference(
    ct_checkpoint: Path, tmp_path: Path
) -> None:
    # The reference: the plain command, one window (the whole volume) in torch float32.
    expected = _segment(
        ct_checkpoint, tmp_path / "one", "--backend", "torch", "--precision", "fp32"
    )
    got = _segment(ct_checkpoint, tmp_path / "two", "--spatial-parallel", "2")
    assert len(np.unique(expected)) > 1  # the network labels more than one class here
    differing = int((got != expected).sum())
    print(f"voxels differing: {differing} of {expected.size}")
    assert differing == 0
    report = json.loads((tmp_path / "two" / "report.json").read_text())["model"]
    assert report["spatial_parallel"] == "2" and report["window"] == "whole volume 64x64x8"


def test_a_volume_too_thin_for_the_processes_is_refused_naming_the_series(
    ct_checkpoint: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # 64 voxels along X over 16 processes: 4 each, 1 at the bottom of the U-Net, 0 below.
    start = time.monotonic()
    argv = ["segment", str(CT_SERIES), "--model", str(ct_checkpoint), "--out", str(tmp_path / "o")]
    code = main([*argv, "--device", "cpu", "--spatial-parallel", "16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert f"{CT_SERIES}: the image is 64x64x8 voxels on the model grid" in err, err
    assert "too thin to split over 16 processes along X" in err and "slab" in err, err
    assert not (tmp_path / "o").exists()
    assert time.monotonic() - start < 60  # refused before any process started


class _DiesOnRank1(nn.Module):
    """unet_small whose rank 1 exits mid-job (out of memory, a killed process)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = build_network("unet_small", 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if dist.is_initialized() and dist.get_rank() == 1:
            os._exit(3)
        out: torch.Tensor = self.net(x)
        return out


@pytest.mark.dist
def test_a_process_that_dies_is_reported_and_nothing_hangs(ct_checkpoint: Path) -> None:
    model = load_checkpoint(ct_checkpoint)
    model.network = _DiesOnRank1()
    ct = read_series(CT_SERIES)
    start = time.monotonic()
    predictor = WholeVolumePredictor(model, ct, CT_SERIES, ranks=2, device="cpu", timeout_s=180)
    with pytest.raises(RankFailedError) as info:
        predictor.predict(ct)
    message = str(info.value)
    assert "rank 1: died with exit code 3" in message, message
    assert time.monotonic() - start < 180
