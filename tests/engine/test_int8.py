"""int8 on OpenVINO: calibrated on a run's own windows, checked against float32, cached.

On the shipped hippocampus model and the 4 example cases (one window each): the first two
windows calibrate, the next two check; the kept int8 network's labels must agree with
float32 torch eager on >= 99.5% of voxels and the hippocampus Dice stay >= 0.98.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.core.errors import ConfigError
from medverse.core.volume import Volume
from medverse.engine.backends import make_backend
from medverse.engine.cpu_isa import has_module
from medverse.engine.int8 import AGREEMENT_FLOOR, cached_verdict, compare_labels, int8_paths
from medverse.inference.predictor import Predictor
from medverse.io.nifti import read_nifti
from medverse.models.checkpoint import LoadedModel, load_checkpoint
from medverse.models.onnx_export import export_onnx
from tests.conftest import EXAMPLES, REPO

pytestmark = pytest.mark.skipif(
    not (has_module("openvino") and has_module("nncf")), reason="openvino/nncf not installed"
)

MODEL = REPO / "models" / "hippocampus_dynunet.pt"
CASES = sorted((EXAMPLES / "hippocampus" / "imagesTr").glob("*.nii.gz"))


@pytest.fixture(scope="module")
def hippo(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, list[Volume], Path]:
    model = load_checkpoint(MODEL)
    onnx = export_onnx(model, tmp_path_factory.mktemp("int8") / "hippo.onnx", exporter="legacy")
    return model, [read_nifti(c) for c in CASES], onnx


def test_int8_calibrates_checks_caches_and_agrees(
    hippo: tuple[LoadedModel, list[Volume], Path],
) -> None:
    model, volumes, onnx = hippo
    assert len(volumes) == 4
    first = Predictor(model, device="cpu", backend="auto", precision="int8", onnx_path=onnx)
    first.backend._calibration_windows = 4  # one window per case: 2 calibrate, 2 check
    for volume in volumes:
        first.predict(volume)
    verdict = cached_verdict(onnx)
    assert verdict is not None and verdict.windows == 2
    assert verdict.kept and verdict.agreement >= AGREEMENT_FLOOR
    assert all(path.exists() for path in int8_paths(onnx))
    later = Predictor(
        model, device="cpu", backend="auto", precision="int8", onnx_path=onnx
    )  # from the cache
    assert later.describe()["precision"] == "int8"
    assert "int8 kept" in later.backend.describe()
    eager = Predictor(model, device="cpu", backend="torch", precision="fp32")
    for volume in volumes:
        reference, labels = eager.predict(volume).array, later.predict(volume).array
        agreement, dice = compare_labels(reference, labels)
        assert (reference > 0).sum() > 300  # the trained model finds the hippocampus
        assert agreement >= 0.995 and dice >= 0.98


def test_a_failed_check_keeps_float32(
    hippo: tuple[LoadedModel, list[Volume], Path], tmp_path: Path
) -> None:
    model, volumes, onnx = hippo
    copy = tmp_path / "other.onnx"
    copy.write_bytes(onnx.read_bytes())
    failed = {"agreement": 0.9, "foreground_dice": 0.5, "windows": 6, "kept": False}
    int8_paths(copy)[1].write_text(json.dumps(failed))
    predictor = Predictor(model, device="cpu", backend="auto", precision="int8", onnx_path=copy)
    assert predictor.describe()["precision"] == "fp32"
    assert "not kept (float32 runs)" in predictor.backend.describe()
    float32 = Predictor(model, device="cpu", backend="openvino", precision="fp32", onnx_path=copy)
    np.testing.assert_array_equal(
        predictor.predict(volumes[0]).array, float32.predict(volumes[0]).array
    )
    assert not int8_paths(copy)[0].exists()  # no quantised network was made


def test_int8_is_openvino_only(hippo: tuple[LoadedModel, list[Volume], Path]) -> None:
    model, _, _ = hippo
    with pytest.raises(ConfigError, match="int8 runs on the openvino backend"):
        make_backend(model, torch.device("cpu"), kind="torch", precision="int8")


def test_compare_labels_counts_voxels_and_foreground() -> None:
    reference = np.zeros((4, 4, 4), dtype=np.uint8)
    reference[:2, :2, :2] = 1  # 8 foreground voxels
    candidate = reference.copy()
    candidate[0, 0, 0] = 0
    agreement, dice = compare_labels(reference, candidate)
    assert agreement == pytest.approx(63 / 64) and dice == pytest.approx(14 / 15)
    assert compare_labels(np.zeros(3), np.zeros(3)) == (1.0, 1.0)
