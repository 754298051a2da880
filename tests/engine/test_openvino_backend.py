"""OpenVINO backend: torch parity on the shipped model, the export cache, what ``auto`` picks.

Tolerances: labels agree on >= 99.9% of voxels; probabilities within 1e-2 (OpenVINO's CPU
kernels reorder the float32 sums more than ONNX Runtime's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.cli.main import main
from medverse.core.errors import ConfigError
from medverse.core.volume import Volume
from medverse.engine.backends import BackendKind, cpu_has_bf16, make_backend, resolve_kind
from medverse.engine.cpu_isa import CpuIsa, cpu_isa, default_cpu_backend, has_module
from medverse.engine.openvino_backend import cached_onnx
from medverse.inference.predictor import Predictor
from medverse.io.nifti import read_nifti
from medverse.models.checkpoint import LoadedModel, load_checkpoint
from medverse.models.onnx_export import export_onnx
from tests.conftest import EXAMPLES, REPO
from tests.inference.helpers import ct_plan, untrained_checkpoint

pytestmark = pytest.mark.skipif(not has_module("openvino"), reason="openvino is not installed")

MODEL = REPO / "models" / "hippocampus_dynunet.pt"
CASE = EXAMPLES / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"


@pytest.fixture(scope="module")
def hippo() -> tuple[LoadedModel, Volume]:
    return load_checkpoint(MODEL), read_nifti(CASE)


def test_openvino_matches_torch_float32(hippo: tuple[LoadedModel, Volume], tmp_path: Path) -> None:
    model, image = hippo
    onnx = export_onnx(model, tmp_path / "hippo.onnx", exporter="legacy")
    reference = Predictor(model, device="cpu", precision="fp32").predict_probabilities(image)
    predictor = Predictor(model, device="cpu", backend="openvino", onnx_path=onnx)
    probs = predictor.predict_probabilities(image)
    assert (reference.argmax(0) > 0).sum() > 500  # the trained model finds the hippocampus
    assert np.abs(probs - reference).max() < 1e-2
    assert (probs.argmax(0) == reference.argmax(0)).mean() >= 0.999
    described = predictor.describe()
    assert described["backend"] == "openvino" and described["precision"] == "fp32"
    assert described["cpu_isa"] == str(cpu_isa())


def test_export_is_cached_per_weights(tmp_path: Path) -> None:
    first = load_checkpoint(untrained_checkpoint(ct_plan(), tmp_path / "a.pt", seed=1))
    path = cached_onnx(first, tmp_path / "cache")
    stamp = path.stat().st_mtime_ns
    assert cached_onnx(first, tmp_path / "cache") == path and path.stat().st_mtime_ns == stamp
    other = load_checkpoint(untrained_checkpoint(ct_plan(), tmp_path / "b.pt", seed=2))
    assert cached_onnx(other, tmp_path / "cache") != path


def test_auto_picks_per_device_and_precision() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_kind(cuda, "auto", "auto") == BackendKind.TORCH
    native_bf16 = BackendKind.OPENVINO if cpu_has_bf16() else BackendKind.TORCH  # else autocast
    assert resolve_kind(cpu, "auto", "bf16") == native_bf16
    assert resolve_kind(cpu, "auto", "auto", onnx="model.onnx") == BackendKind.ONNXRUNTIME
    assert resolve_kind(cpu, "auto", "fp32") == BackendKind.OPENVINO == default_cpu_backend()
    assert resolve_kind(cpu, "torch", "auto") == BackendKind.TORCH


def test_openvino_refuses_what_it_cannot_run(hippo: tuple[LoadedModel, Volume]) -> None:
    model, _ = hippo
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="fp32, int8, or bf16"):
        make_backend(model, cpu, kind="openvino", precision="fp16")
    if not cpu_has_bf16():
        with pytest.raises(ConfigError, match="AVX512-BF16 or AMX"):
            make_backend(model, cpu, kind="openvino", precision="bf16")


def test_help_says_which_cpu_path_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"here: {cpu_isa()} CPU: openvino, float32" in text
    assert cpu_isa() in set(CpuIsa)
