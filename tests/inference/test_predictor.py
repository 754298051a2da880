"""The Predictor on real data: native grid, plan labels only, geometry round trip, fitted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.core.errors import ConfigError, ModelError
from medverse.core.volume import LabelMap, Volume
from medverse.inference.predictor import Predictor, mirror_axes, resolve_device
from medverse.models.checkpoint import LoadedModel, load_checkpoint
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import resample_to_grid, resample_to_spacing
from tests.inference.helpers import (
    CT_TEST_LABELS,
    ct_plan,
    dice,
    hippo_checkpoint,  # noqa: F401  (fixture)
    hippo_plan,
    read_ct,
    read_hippo,
    untrained_checkpoint,
)

# Intensity code of the "known" network: background 0, liver 100, spleen 200 (HU-like values).
CODE = {0: 0.0, 5: 100.0, 1: 200.0}


class IntensityClassifier(torch.nn.Module):
    """A pointwise 'network' whose argmax decodes CODE exactly; channels 2-4 shout loudest.

    Channels 2, 3 and 4 are label values the plan does not name; they get the highest logit
    everywhere, so any output holding them proves the Predictor kept unnamed channels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 6, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[5, 0] = 0.1  # liver wins on (50, 150)
            self.conv.weight[1, 0] = 0.2  # spleen wins above 150
            self.conv.bias.copy_(torch.tensor([0.0, -20.0, 40.0, 40.0, 40.0, -5.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _coded_ct() -> tuple[Volume, LabelMap]:
    ct, reference = read_ct()
    coded = np.zeros(reference.shape, dtype=np.float32)
    for value, level in CODE.items():
        coded[reference.array == value] = level
    return ct.with_array(coded), reference


def _identity_ct_plan(spacing: tuple[float, float, float]) -> Plan:
    return ct_plan(spacing).model_copy(
        update={"clip_low": -1000.0, "clip_high": 1000.0, "mean": 0.0, "std": 1.0}
    )


def _known_model(plan: Plan) -> LoadedModel:
    return LoadedModel(IntensityClassifier(), plan, dict(plan.labels), plan.preset)


@pytest.fixture(scope="module")
def coded_ct() -> tuple[Volume, LabelMap]:
    return _coded_ct()


def test_known_network_reproduces_the_reference_through_resampling(
    coded_ct: tuple[Volume, LabelMap],
) -> None:
    """Anisotropic 3 x 3 x 4 mm plan grid, x-flipped CT affine: labels come back in place."""
    image, reference = coded_ct
    predictor = Predictor(_known_model(_identity_ct_plan((3.0, 3.0, 4.0))), device="cpu")
    labels = predictor.predict(image)
    assert labels.shape == image.shape
    assert np.array_equal(labels.affine, image.affine)
    assert set(np.unique(labels.array)) <= {0, 1, 5}
    assert labels.labels == CT_TEST_LABELS
    assert dice(labels.array == 5, reference.array == 5) > 0.97
    assert dice(labels.array == 1, reference.array == 1) > 0.97


def test_probabilities_resampled_beat_argmax_then_nearest(
    coded_ct: tuple[Volume, LabelMap],
) -> None:
    image, reference = coded_ct
    spacing = (6.0, 6.0, 6.0)
    predictor = Predictor(_known_model(_identity_ct_plan(spacing)), device="cpu")
    ours = predictor.predict(image)
    on_plan_grid = predictor.predict(resample_to_spacing(image, spacing, order=1))
    nearest = resample_to_grid(on_plan_grid, image.affine, image.shape, order=0)
    for value in (1, 5):
        truth = reference.array == value
        assert dice(ours.array == value, truth) > dice(nearest.array == value, truth)


def test_mirror_tta_of_a_pointwise_network_changes_nothing(
    coded_ct: tuple[Volume, LabelMap],
) -> None:
    assert len(set(mirror_axes(True))) == 8 and mirror_axes(False) == [()]
    image, _ = coded_ct
    model = _known_model(_identity_ct_plan((6.0, 6.0, 6.0)))
    plain = Predictor(model, device="cpu").predict(image)
    mirrored = Predictor(model, device="cpu", mirror_tta=True).predict(image)
    assert np.array_equal(plain.array, mirrored.array)


def test_untrained_checkpoint_output_is_on_the_native_grid(tmp_path: Path) -> None:
    image, _ = read_hippo()
    plan = hippo_plan((1.3, 1.3, 1.3))
    model = load_checkpoint(untrained_checkpoint(plan, tmp_path / "u.pt"))
    predictor = Predictor(model, device="cpu", overlap=0.25)
    labels = predictor.predict(image)
    assert labels.shape == image.shape
    assert np.array_equal(labels.affine, image.affine)
    assert labels.array.dtype == np.uint8
    assert set(np.unique(labels.array)) <= {0, 1, 2}
    assert labels.meta["source"] == image.meta["source"]
    probs = predictor.predict_probabilities(image)
    assert probs.shape == (3, *image.shape) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(axis=0), labels.array)


@pytest.mark.slow
def test_fitted_checkpoint_segments_its_case(hippo_checkpoint: Path) -> None:  # noqa: F811
    image, reference = read_hippo()
    labels = Predictor(load_checkpoint(hippo_checkpoint), device="cpu").predict(image)
    assert labels.shape == image.shape and np.array_equal(labels.affine, image.affine)
    for value in (1, 2):
        assert dice(labels.array == value, reference.array == value) > 0.7


def test_a_network_with_the_wrong_class_count_is_refused() -> None:
    image, _ = read_hippo()
    plan = hippo_plan()
    model = LoadedModel(torch.nn.Conv3d(1, 5, kernel_size=1), plan, dict(plan.labels), "x")
    with pytest.raises(ModelError, match="predicts 5 classes but the plan needs 3"):
        Predictor(model, device="cpu").predict(image)


def test_bad_options_are_refused() -> None:
    model = _known_model(_identity_ct_plan((6.0, 6.0, 6.0)))
    with pytest.raises(ConfigError, match="overlap"):
        Predictor(model, overlap=1.0)
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_cuda_autocast_agrees_with_cpu(hippo_checkpoint: Path) -> None:  # noqa: F811
    image, _ = read_hippo()
    model = load_checkpoint(hippo_checkpoint)
    on_cpu = Predictor(model, device="cpu").predict(image)
    on_gpu = Predictor(load_checkpoint(hippo_checkpoint), device="cuda").predict(image)
    assert np.array_equal(on_gpu.affine, image.affine)
    for value in (1, 2):
        assert dice(on_gpu.array == value, on_cpu.array == value) > 0.97
