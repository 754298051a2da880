"""The one intensity normaliser on real MR and CT voxels: numpy and torch give equal voxels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medverse.io.nifti import read_nifti
from medverse.preprocessing import normalize
from medverse.preprocessing.normalize import intensity_map, normalize_intensity
from medverse.preprocessing.plan import Normalization, Plan
from medverse.preprocessing.transforms import PlanNormalized
from tests.conftest import HIPPOCAMPUS, SHARED_DATA

MR_PLAN = Plan(
    modality="MR",
    target_spacing=(1.0, 1.0, 1.0),
    patch_size=(40, 56, 40),
    normalization=Normalization.ZSCORE,
    labels={1: "Anterior", 2: "Posterior"},
    preset="dynunet",
)
CT_PLAN = Plan(
    modality="CT",
    target_spacing=(3.0, 3.0, 3.0),
    patch_size=(32, 32, 32),
    normalization=Normalization.CT_WINDOW,
    clip_low=-200.0,
    clip_high=300.0,
    mean=60.0,
    std=50.0,
    labels={5: "liver"},
    preset="segresnet",
)


@pytest.mark.parametrize("case", ["hippocampus_212", "hippocampus_172"])  # max 1.6e6 vs 112
def test_mr_zscore_gives_zero_mean_unit_std_in_numpy_and_torch(case: str) -> None:
    image = read_nifti(HIPPOCAMPUS / "imagesTr" / f"{case}.nii.gz").array
    out = normalize_intensity(image, MR_PLAN)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(out.std()) == pytest.approx(1.0, abs=1e-4)
    from_torch = normalize_intensity(torch.from_numpy(np.asarray(image)), MR_PLAN)
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float32
    assert np.array_equal(from_torch.numpy(), out)  # the very same float32 values


def test_ct_window_clips_then_uses_the_plans_statistics() -> None:
    hu = read_nifti(SHARED_DATA / "totalsegmentator_example_ct" / "example_ct_sm.nii.gz").array
    out = normalize_intensity(hu, CT_PLAN)
    assert float(out.min()) == pytest.approx((-200 - 60) / 50)  # air clipped to -200 HU
    assert float(out.max()) == pytest.approx((300 - 60) / 50)  # bone clipped to 300 HU
    soft = np.argwhere(np.asarray(hu) == 60)[0]
    assert out[tuple(soft)] == pytest.approx(0.0)
    from_torch = normalize_intensity(torch.from_numpy(np.asarray(hu)), CT_PLAN)
    assert np.array_equal(from_torch.numpy(), out)


def test_constant_volume_becomes_zeros_not_nan() -> None:
    out = normalize_intensity(np.full((4, 5, 6), 7.0), MR_PLAN)
    assert np.all(out == 0)


def test_dictionary_wrapper_touches_only_its_keys() -> None:
    image = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    label = np.ones((1, 2, 3, 4), dtype=np.uint8)
    out = PlanNormalized(keys="image", plan=MR_PLAN)({"image": image, "label": label})
    assert out["label"] is label
    np.testing.assert_allclose(out["image"], normalize_intensity(image, MR_PLAN))


def test_huge_images_get_slab_statistics_equal_up_to_rounding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond EXACT_STATS_VOXELS (or on a GPU) the z-score statistics are summed slab by slab."""
    image = read_nifti(HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz").array
    raw = torch.from_numpy(np.asarray(image))
    exact = intensity_map(raw, MR_PLAN)
    assert exact == intensity_map(np.asarray(image), MR_PLAN)
    monkeypatch.setattr(normalize, "EXACT_STATS_VOXELS", 0)
    slabs = intensity_map(raw, MR_PLAN)
    assert slabs.shift == pytest.approx(exact.shift, rel=1e-9)
    assert slabs.scale == pytest.approx(exact.scale, rel=1e-9)
    expected = normalize_intensity(np.asarray(image), MR_PLAN)
    assert np.allclose(slabs.apply(raw).numpy(), expected, atol=1e-5)


def test_clipping_is_skipped_only_when_no_value_of_the_dtype_can_clip() -> None:
    window = intensity_map(np.zeros(3), CT_PLAN)
    assert window.clips(torch.int16) and window.clips(torch.float32)
    wide = intensity_map(
        np.zeros(3), CT_PLAN.model_copy(update={"clip_low": -1e6, "clip_high": 1e6})
    )
    assert not wide.clips(torch.int16) and wide.clips(torch.int32)
    assert window.value(60.0) == 0.0 and window.value(-1000.0) == pytest.approx(-5.2)
