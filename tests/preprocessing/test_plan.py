"""Plan decisions, each on its own, then the whole plan from real fingerprints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medverse.core.errors import ConfigError, InputError
from medverse.core.registry import Modality
from medverse.io.nifti import read_nifti, read_nifti_labels
from medverse.preprocessing.fingerprint import (
    Fingerprint,
    IntensityStats,
    compute_fingerprint,
    fingerprint_msd_dataset,
)
from medverse.preprocessing.plan import (
    Normalization,
    Plan,
    choose_normalization,
    choose_patch_size,
    choose_target_spacing,
    make_plan,
    median_shape_at_spacing,
)
from medverse.preprocessing.stride import preset_stride
from tests.conftest import HIPPOCAMPUS, SHARED_DATA

TOTALSEG = SHARED_DATA / "totalsegmentator_example_ct"
STATS = IntensityStats(
    mean=50.0,
    std=120.0,
    median=40.0,
    min=-1000.0,
    max=2000.0,
    percentile_00_5=-900.0,
    percentile_99_5=1500.0,
    num_samples=100,
)


@pytest.fixture(scope="module")
def hippocampus_fingerprint() -> Fingerprint:
    return fingerprint_msd_dataset(HIPPOCAMPUS)


@pytest.fixture(scope="module")
def ct_fingerprint() -> Fingerprint:
    image = read_nifti(TOTALSEG / "example_ct_sm.nii.gz")
    label = read_nifti_labels(TOTALSEG / "example_seg.nii.gz")
    return compute_fingerprint([(image, label)], Modality.CT)


# --- choose_target_spacing -------------------------------------------------------------


def test_isotropic_data_takes_the_median_spacing() -> None:
    spacings = [(1.0, 1.0, 1.0), (1.2, 1.0, 0.8), (0.8, 1.0, 1.5)]
    assert choose_target_spacing(spacings) == pytest.approx((1.0, 1.0, 1.0))


def test_mildly_anisotropic_data_keeps_the_median() -> None:
    spacings = [(0.8, 0.8, 2.0), (0.8, 0.8, 2.0), (0.8, 0.8, 1.5)]
    assert choose_target_spacing(spacings) == pytest.approx((0.8, 0.8, 2.0))


def test_anisotropic_axis_takes_its_10th_percentile() -> None:
    z = [2.5, 3.0] + [5.0] * 8
    spacings = [(0.8, 0.8, s) for s in z]
    expected_z = 2.5 + 0.9 * 0.5  # numpy's linear 10th percentile of z
    assert choose_target_spacing(spacings) == pytest.approx((0.8, 0.8, expected_z))


def test_anisotropic_axis_never_goes_finer_than_the_others() -> None:
    spacings = [(2.0, 2.0, 0.5)] * 2 + [(2.0, 2.0, 8.0)] * 8  # k is low-res; its 10th pct 0.5
    target = choose_target_spacing(spacings)
    assert target[2] == pytest.approx(2.0)


# --- choose_patch_size -------------------------------------------------------------------


def test_median_shape_at_a_coarser_spacing_halves() -> None:
    shapes = [(100, 80, 60), (120, 80, 40)]
    spacings = [(1.0, 1.0, 1.0), (1.0, 1.0, 1.0)]
    assert median_shape_at_spacing(shapes, spacings, (2.0, 2.0, 2.0)) == (55.0, 40.0, 25.0)


def test_patch_is_median_shape_rounded_up_to_the_stride() -> None:
    assert choose_patch_size((35, 50, 35), (8, 8, 8)) == (40, 56, 40)
    assert choose_patch_size((40, 48, 16), (8, 8, 8)) == (40, 48, 16)
    assert choose_patch_size((3, 70, 20), (2, 16, 4)) == (4, 80, 20)


def test_patch_is_capped_by_the_voxel_budget() -> None:
    patch = choose_patch_size((300, 300, 120), (16, 16, 16), max_voxels=128**3)
    assert math.prod(patch) <= 128**3
    assert all(p % 16 == 0 and p >= 16 for p in patch)
    assert patch[2] <= patch[0]  # the longest axes lose first
    assert choose_patch_size((500, 500, 500), (8, 8, 8), max_voxels=10) == (8, 8, 8)


# --- choose_normalization ----------------------------------------------------------------


def test_ct_clips_to_foreground_percentiles_and_uses_dataset_stats() -> None:
    choice = choose_normalization(Modality.CT, STATS)
    assert choice.normalization == Normalization.CT_WINDOW
    assert (choice.clip_low, choice.clip_high) == (-900.0, 1500.0)
    assert (choice.mean, choice.std) == (50.0, 120.0)


def test_mr_is_zscored_per_volume() -> None:
    choice = choose_normalization("MR", STATS)
    assert choice.normalization == Normalization.ZSCORE
    assert None is choice.clip_low is choice.clip_high is choice.mean is choice.std


# --- make_plan ---------------------------------------------------------------------------


def test_hippocampus_plan(hippocampus_fingerprint: Fingerprint) -> None:
    plan = make_plan(hippocampus_fingerprint)
    assert plan.modality == Modality.MR
    assert plan.normalization == Normalization.ZSCORE
    assert plan.target_spacing == pytest.approx((1.0, 1.0, 1.0))
    assert plan.patch_size == (40, 56, 40)
    assert plan.labels == {1: "Anterior", 2: "Posterior"}
    assert plan.num_classes == 3
    assert plan.preset == "dynunet"
    assert plan.overrides == {}


def test_ct_plan_uses_a_hounsfield_window(ct_fingerprint: Fingerprint) -> None:
    plan = make_plan(ct_fingerprint, preset="segresnet")
    assert plan.normalization == Normalization.CT_WINDOW
    assert plan.clip_low is not None and plan.clip_high is not None
    assert -1100 <= plan.clip_low < 0 < plan.clip_high <= 2000  # soft tissue to bone, in HU
    assert plan.target_spacing == pytest.approx((3.0, 3.0, 3.0))
    assert all(p % s == 0 for p, s in zip(plan.patch_size, preset_stride("segresnet")))


def test_overrides_are_applied_and_recorded(hippocampus_fingerprint: Fingerprint) -> None:
    overrides = {"target_spacing": (2.0, 2.0, 2.0), "normalization": "ct_window", "std": 10.0}
    plan = make_plan(hippocampus_fingerprint, overrides=overrides)
    assert plan.target_spacing == (2.0, 2.0, 2.0)
    assert plan.patch_size == (24, 32, 24)  # median 17.5x25x17.5 at 2 mm, stride 8
    assert plan.normalization == Normalization.CT_WINDOW
    assert plan.std == 10.0
    assert plan.mean == hippocampus_fingerprint.foreground.mean
    assert plan.overrides == {
        "target_spacing": [2.0, 2.0, 2.0],
        "normalization": "ct_window",
        "std": 10.0,
    }


def test_voxel_budget_override_shrinks_the_patch(hippocampus_fingerprint: Fingerprint) -> None:
    plan = make_plan(hippocampus_fingerprint, overrides={"max_patch_voxels": 50_000})
    assert plan.patch_size == (32, 32, 40)
    assert math.prod(plan.patch_size) <= 50_000
    assert plan.overrides == {"max_patch_voxels": 50_000}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"patch_size": (30, 56, 40)}, "multiple of the network stride"),
        ({"spacing": (1, 1, 1)}, "unknown plan override"),
        ({"normalization": "minmax"}, "normalization must be one of"),
        ({"max_patch_voxels": "lots"}, "whole number"),
        ({"target_spacing": (1, 1)}, "three numbers"),
        ({"clip_low": 10.0, "clip_high": 0.0, "normalization": "ct_window"}, "clip_low"),
    ],
)
def test_bad_overrides_are_refused(
    hippocampus_fingerprint: Fingerprint, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_plan(hippocampus_fingerprint, overrides=overrides)


def test_unknown_preset_is_refused(hippocampus_fingerprint: Fingerprint) -> None:
    with pytest.raises(ConfigError, match="unknown model preset"):
        make_plan(hippocampus_fingerprint, preset="resnet9000")


# --- Plan JSON -----------------------------------------------------------------------------


def test_plan_json_round_trip(ct_fingerprint: Fingerprint, tmp_path: Path) -> None:
    plan = make_plan(ct_fingerprint, overrides={"patch_size": [32, 32, 16]})
    path = plan.save(tmp_path / "plan.json")
    loaded = Plan.load(path)
    assert loaded == plan
    assert loaded.labels == plan.labels and all(isinstance(k, int) for k in loaded.labels)


def test_invalid_plan_file_names_file_and_field(
    ct_fingerprint: Fingerprint, tmp_path: Path
) -> None:
    data = make_plan(ct_fingerprint).model_dump(mode="json")
    data["mean"] = None
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="ct_window needs") as info:
        Plan.load(path)
    assert info.value.path == path
    with pytest.raises(InputError, match="not found"):
        Plan.load(tmp_path / "nope.json")
