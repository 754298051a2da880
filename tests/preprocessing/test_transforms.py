"""Transform chains on real hippocampus cases: patches of the plan's size, labels intact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medverse.core.volume import LabelMap, Volume
from medverse.io.nifti import read_nifti, read_nifti_labels
from medverse.preprocessing.normalize import normalize_intensity
from medverse.preprocessing.plan import Normalization, Plan
from medverse.preprocessing.transforms import (
    inference_transforms,
    prepare_case,
    training_transforms,
)
from tests.conftest import HIPPOCAMPUS

PLAN = Plan(
    modality="MR",
    target_spacing=(1.0, 1.0, 1.0),
    patch_size=(40, 56, 40),
    normalization=Normalization.ZSCORE,
    labels={1: "Anterior", 2: "Posterior"},
    preset="dynunet",
)


@pytest.fixture(scope="module")
def case() -> tuple[Volume, LabelMap]:
    image = read_nifti(HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz")
    label = read_nifti_labels(HIPPOCAMPUS / "labelsTr" / "hippocampus_001.nii.gz")
    return image, label


def test_prepare_case_resamples_to_the_plan_spacing(case: tuple[Volume, LabelMap]) -> None:
    image, label = case
    coarse = PLAN.model_copy(update={"target_spacing": (2.0, 2.0, 2.0)})
    sample = prepare_case(image, label, coarse)
    assert sample["image"].shape == (1, 18, 26, 18) and sample["image"].dtype == np.float32
    assert sample["label"].shape == (1, 18, 26, 18)
    assert set(np.unique(sample["label"])) <= {0, 1, 2}
    assert np.linalg.norm(sample["affine"][:3, :3], axis=0) == pytest.approx([2.0, 2.0, 2.0])


def test_training_patches_have_the_plan_size_and_valid_labels(
    case: tuple[Volume, LabelMap],
) -> None:
    image, label = case  # 35x51x35: smaller than the patch, so it is padded first
    chain = training_transforms(PLAN, num_samples=3)
    chain.set_random_state(seed=0)
    patches = chain(prepare_case(image, label, PLAN))
    assert len(patches) == 3
    for patch in patches:
        assert patch["image"].shape == (1, 40, 56, 40)
        assert patch["image"].dtype == torch.float32
        assert set(patch["label"].unique().tolist()) <= {0.0, 1.0, 2.0}
        assert torch.isfinite(patch["image"]).all()


def test_positive_crops_contain_foreground(case: tuple[Volume, LabelMap]) -> None:
    image, label = case
    small = PLAN.model_copy(update={"patch_size": (16, 16, 16)})
    chain = training_transforms(small, num_samples=8, pos=1.0, neg=0.0, augment=False)
    chain.set_random_state(seed=1)
    for patch in chain(prepare_case(image, label, small)):
        assert patch["image"].shape == (1, 16, 16, 16)
        assert (patch["label"] > 0).any()


def test_augmentation_is_reproducible_with_a_seed(case: tuple[Volume, LabelMap]) -> None:
    image, label = case
    sample = prepare_case(image, label, PLAN)
    runs = []
    for _ in range(2):
        chain = training_transforms(PLAN, num_samples=2)
        chain.set_random_state(seed=7)
        runs.append(chain(sample))
    for a, b in zip(*runs):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_inference_chain_normalises_without_cropping(case: tuple[Volume, LabelMap]) -> None:
    image, _ = case
    sample = prepare_case(image, None, PLAN)
    out = inference_transforms(PLAN)(sample)
    assert out["image"].shape == (1, *image.shape)
    expected = normalize_intensity(sample["image"], PLAN)
    np.testing.assert_allclose(out["image"].numpy(), expected, atol=1e-6)
