"""Parity of every backend with torch float32, on the shipped trained model and real images.

The model is ``models/hippocampus_dynunet.pt`` (DynUNet trained on MSD hippocampus); the
image is a validation case of its split. Stated tolerances: labels agree on >= 99.9% of
voxels for every backend; probabilities agree within 1e-4 (ONNX Runtime float32 on CPU or
CUDA, torch.compile float32) and within 0.05 (bf16 on a CPU, CUDA autocast, TensorRT fp16).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.core.errors import ConfigError, ModelError
from medverse.core.volume import Volume
from medverse.engine.backends import cpu_has_bf16, make_backend
from medverse.engine.cpu_isa import default_cpu_backend
from medverse.inference.predictor import Predictor
from medverse.io.nifti import read_nifti
from medverse.models.checkpoint import LoadedModel, load_checkpoint
from medverse.models.onnx_export import META_PLAN, check_export, export_onnx, onnx_metadata
from tests.conftest import EXAMPLES, REPO
from tests.inference.helpers import ct_plan, read_ct, untrained_checkpoint

MODEL = REPO / "models" / "hippocampus_dynunet.pt"
CASE = EXAMPLES / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"
LABEL_AGREEMENT = 0.999
FLOAT32_TOLERANCE = 1e-4
LOW_PRECISION_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def hippo() -> tuple[LoadedModel, Volume]:
    return load_checkpoint(MODEL), read_nifti(CASE)


@pytest.fixture(scope="module")
def hippo_onnx(hippo: tuple[LoadedModel, Volume], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(hippo[0], tmp_path_factory.mktemp("onnx") / "hippo.onnx")


@pytest.fixture(scope="module")
def reference(hippo: tuple[LoadedModel, Volume]) -> np.ndarray:
    model, image = hippo
    probs = Predictor(model, device="cpu", precision="fp32").predict_probabilities(image)
    assert probs.shape == (3, *image.shape)
    assert (probs.argmax(0) > 0).sum() > 500  # the trained model finds the hippocampus
    return probs


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(0) == b.argmax(0)).mean())


def test_onnxruntime_cpu_matches_torch(
    hippo: tuple[LoadedModel, Volume], hippo_onnx: Path, reference: np.ndarray
) -> None:
    model, image = hippo
    predictor = Predictor(model, device="cpu", backend="onnxruntime", onnx_path=hippo_onnx)
    probs = predictor.predict_probabilities(image)
    assert np.abs(probs - reference).max() < FLOAT32_TOLERANCE
    assert agreement(probs, reference) >= LABEL_AGREEMENT
    labels = predictor.predict(image)
    assert labels.shape == image.shape and np.array_equal(labels.affine, image.affine)
    assert predictor.describe()["backend"] == "onnxruntime"


def test_export_keeps_plan_and_refuses_other_weights(
    hippo: tuple[LoadedModel, Volume], hippo_onnx: Path, tmp_path: Path
) -> None:
    model, _ = hippo
    meta = onnx_metadata(hippo_onnx)
    assert json.loads(meta[META_PLAN]) == json.loads(model.plan.model_dump_json())
    assert check_export(model, hippo_onnx) < 1e-3
    other = load_checkpoint(untrained_checkpoint(model.plan, tmp_path / "other.pt", seed=3))
    with pytest.raises(ModelError, match="other weights"):
        make_backend(other, torch.device("cpu"), kind="onnxruntime", onnx=hippo_onnx)
    with pytest.raises(ModelError, match="ONNX file not found"):
        onnx_metadata(tmp_path / "missing.onnx")


def test_legacy_export_of_a_ct_model_matches_torch(tmp_path: Path) -> None:
    """A CT model (5 channels, 3 kept) through the TorchScript-based exporter.

    The CT series is resampled to the plan's 8 mm and the probabilities back.
    """
    model = load_checkpoint(untrained_checkpoint(ct_plan(), tmp_path / "ct.pt", seed=2))
    image, _ = read_ct()
    onnx = export_onnx(model, tmp_path / "ct.onnx", exporter="legacy")
    ours = Predictor(model, device="cpu", backend="onnxruntime", onnx_path=onnx)
    theirs = Predictor(model, device="cpu")
    probs, expected = ours.predict_probabilities(image), theirs.predict_probabilities(image)
    assert probs.shape == expected.shape == (3, *image.shape)
    assert np.abs(probs - expected).max() < FLOAT32_TOLERANCE
    labels, reference = ours.predict(image).array, theirs.predict(image).array
    assert (labels == reference).mean() >= LABEL_AGREEMENT
    assert set(np.unique(reference)) == {0, 1, 5}  # label values, not channel indices


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("backend", ["auto", "torch"])  # auto: OpenVINO bf16 where installed
def test_cpu_bf16_matches_float32(
    hippo: tuple[LoadedModel, Volume], reference: np.ndarray, backend: str
) -> None:
    model, image = hippo
    predictor = Predictor(model, device="cpu", backend=backend, precision="bf16")
    probs = predictor.predict_probabilities(image)
    described = predictor.describe()
    assert described["precision"] == "bfloat16"
    assert described["backend"] == ("torch" if backend == "torch" else default_cpu_backend())
    assert np.abs(probs - reference).max() < LOW_PRECISION_TOLERANCE
    assert agreement(probs, reference) >= LABEL_AGREEMENT


def test_torch_compile_matches_eager(
    hippo: tuple[LoadedModel, Volume], reference: np.ndarray
) -> None:
    model, image = hippo
    predictor = Predictor(model, device="cpu", backend="compile")
    probs = predictor.predict_probabilities(image)
    assert np.abs(probs - reference).max() < FLOAT32_TOLERANCE
    assert agreement(probs, reference) >= LABEL_AGREEMENT
    assert predictor.describe()["backend"] == "compile"


def test_backend_options_that_cannot_work_are_refused(
    hippo: tuple[LoadedModel, Volume], hippo_onnx: Path
) -> None:
    model, _ = hippo
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="fp16 runs on CUDA only"):
        make_backend(model, cpu, precision="fp16")
    with pytest.raises(ConfigError, match="float32 graph"):
        make_backend(model, cpu, kind="onnxruntime", precision="bf16")
    with pytest.raises(ConfigError, match="tpu"):
        make_backend(model, cpu, kind="tpu")
    with pytest.raises(ConfigError, match="not the torch backend"):
        make_backend(model, cpu, onnx=hippo_onnx)
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        make_backend(model, cpu, kind="onnxruntime", provider="cuda")


@pytest.mark.gpu
def test_cuda_autocast_with_half_accumulators_matches_cpu(
    hippo: tuple[LoadedModel, Volume], reference: np.ndarray
) -> None:
    model, image = hippo
    predictor = Predictor(model, device="cuda")
    assert predictor.options.half_accumulators
    probs = predictor.predict_probabilities(image)
    assert np.abs(probs - reference).max() < LOW_PRECISION_TOLERANCE
    assert agreement(probs, reference) >= LABEL_AGREEMENT
    labels = predictor.predict(image)
    assert labels.shape == image.shape


@pytest.mark.gpu
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_onnxruntime_gpu_providers_match_torch(
    hippo: tuple[LoadedModel, Volume], hippo_onnx: Path, reference: np.ndarray, provider: str
) -> None:
    ort = pytest.importorskip("onnxruntime")
    name = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[provider]
    if name not in ort.get_available_providers():
        pytest.skip(f"onnxruntime here has no {name}")
    model, image = hippo
    predictor = Predictor(
        model, device="cuda", backend="onnxruntime", onnx_path=hippo_onnx, provider=provider
    )
    probs = predictor.predict_probabilities(image)
    tolerance = FLOAT32_TOLERANCE if provider == "cuda" else LOW_PRECISION_TOLERANCE
    assert np.abs(probs - reference).max() < tolerance
    assert agreement(probs, reference) >= LABEL_AGREEMENT


@pytest.mark.gpu
def test_torch_compile_on_cuda_matches_cpu(
    hippo: tuple[LoadedModel, Volume], reference: np.ndarray
) -> None:
    model, image = hippo
    probs = Predictor(model, device="cuda", backend="compile").predict_probabilities(image)
    assert np.abs(probs - reference).max() < LOW_PRECISION_TOLERANCE
    assert agreement(probs, reference) >= LABEL_AGREEMENT
