"""Fingerprints of the real hippocampus and CT data: grids, foreground intensities, JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medverse.core.errors import ConfigError, InputError
from medverse.core.registry import Modality
from medverse.io.nifti import read_nifti, read_nifti_labels
from medverse.preprocessing.fingerprint import (
    Fingerprint,
    compute_fingerprint,
    fingerprint_msd_dataset,
)
from tests.conftest import HIPPOCAMPUS, SHARED_DATA

TOTALSEG = SHARED_DATA / "totalsegmentator_example_ct"


@pytest.fixture(scope="module")
def hippocampus_fingerprint() -> Fingerprint:
    return fingerprint_msd_dataset(HIPPOCAMPUS)


def test_hippocampus_fingerprint_matches_the_data(hippocampus_fingerprint: Fingerprint) -> None:
    fp = hippocampus_fingerprint
    assert fp.modality == Modality.MR
    assert fp.num_cases == len(fp.spacings) == len(fp.shapes) == len(fp.case_names) == 208
    assert fp.median_spacing == pytest.approx((1.0, 1.0, 1.0))
    assert fp.median_shape == (35, 50, 35)
    assert fp.label_values == [0, 1, 2]
    assert fp.labels == {1: "Anterior", 2: "Posterior"}
    assert fp.case_names[0] == "hippocampus_001"
    stats = fp.foreground
    assert stats.num_samples == 208 * 10_000
    assert stats.min <= stats.percentile_00_5 < stats.median < stats.percentile_99_5 <= stats.max


def test_fingerprint_json_round_trip(hippocampus_fingerprint: Fingerprint, tmp_path: Path) -> None:
    path = hippocampus_fingerprint.save(tmp_path / "fingerprint.json")
    assert Fingerprint.load(path) == hippocampus_fingerprint


def test_fingerprint_is_reproducible() -> None:
    first = fingerprint_msd_dataset(HIPPOCAMPUS, max_cases=3)
    assert first == fingerprint_msd_dataset(HIPPOCAMPUS, max_cases=3)
    assert first.num_cases == 3


def test_foreground_statistics_use_only_labelled_voxels() -> None:
    image = read_nifti(TOTALSEG / "example_ct_sm.nii.gz")
    label = read_nifti_labels(TOTALSEG / "example_seg.nii.gz")
    fp = compute_fingerprint([(image, label)], "CT", samples_per_case=200_000)
    organs = np.asarray(image.array, dtype=np.float64)[label.array > 0]
    everything = np.asarray(image.array, dtype=np.float64)
    assert fp.foreground.mean == pytest.approx(organs.mean(), abs=5.0)
    assert fp.foreground.percentile_99_5 == pytest.approx(np.percentile(organs, 99.5), abs=30)
    assert abs(fp.foreground.mean - everything.mean()) > 100  # air outside the body excluded
    assert fp.median_spacing == pytest.approx((3.0, 3.0, 3.0))
    assert fp.labels == label.labels


def test_without_labels_every_voxel_counts() -> None:
    image = read_nifti(TOTALSEG / "example_ct_sm.nii.gz")
    fp = compute_fingerprint([(image, None)], Modality.CT, samples_per_case=200_000)
    assert fp.foreground.mean == pytest.approx(float(np.mean(image.array)), abs=10.0)
    assert fp.label_values == []


def test_shape_mismatch_names_the_case() -> None:
    image = read_nifti(TOTALSEG / "example_ct_sm.nii.gz")
    label = read_nifti_labels(TOTALSEG / "example_seg_fast_force_split.nii.gz")
    with pytest.raises(InputError, match="example_ct_sm"):
        compute_fingerprint([(image, label)], "CT")


def test_empty_label_maps_are_refused() -> None:
    image = read_nifti(TOTALSEG / "example_ct_sm.nii.gz")
    label = read_nifti_labels(TOTALSEG / "example_seg.nii.gz")
    empty = label.with_array(np.zeros_like(label.array))
    with pytest.raises(InputError, match="no foreground"):
        compute_fingerprint([(image, empty)], "CT")


def test_broken_fingerprint_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fingerprint.json"
    path.write_text('{"modality": "CT"}')
    with pytest.raises(ConfigError) as info:
        Fingerprint.load(path)
    assert info.value.path == path
    with pytest.raises(InputError):
        Fingerprint.load(tmp_path / "missing.json")
