from __future__ import annotations

import math

import numpy as np
import pytest

from medverse.io.nifti import read_nifti_labels
from medverse.training.metrics import case_scores, mean_dice, score_totals, totals_to_means
from tests.conftest import HIPPOCAMPUS


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return np.asarray(read_nifti_labels(HIPPOCAMPUS / "labelsTr" / "hippocampus_001.nii.gz").array)


def test_a_perfect_prediction_scores_one(reference: np.ndarray) -> None:
    scores = case_scores(reference, reference, [1, 2], (1.0, 1.0, 1.0))
    for label in (1, 2):
        assert scores[label].dice == 1.0
        assert scores[label].hd95 == 0.0
        assert scores[label].surface_dice == 1.0


def test_a_shifted_prediction_loses_dice_and_gains_distance(reference: np.ndarray) -> None:
    shifted = np.roll(reference, 3, axis=1)
    scores = case_scores(shifted, reference, [1, 2], (1.0, 1.0, 1.0))
    coarse = case_scores(shifted, reference, [1, 2], (2.0, 2.0, 2.0))
    for label in (1, 2):
        assert 0.2 < scores[label].dice < 0.9
        assert scores[label].hd95 == pytest.approx(3.0, abs=0.5)
        assert coarse[label].hd95 == pytest.approx(2 * scores[label].hd95, rel=1e-5)
        assert 0.0 < scores[label].surface_dice < 1.0


def test_empty_labels_follow_the_documented_rules(reference: np.ndarray) -> None:
    empty = np.zeros_like(reference)
    both_empty = case_scores(empty, empty, [1], (1.0, 1.0, 1.0))[1]
    assert (both_empty.dice, both_empty.hd95, both_empty.surface_dice) == (1.0, 0.0, 1.0)
    missed = case_scores(empty, reference, [1], (1.0, 1.0, 1.0))[1]
    assert missed.dice == 0.0 and math.isnan(missed.hd95) and missed.surface_dice == 0.0


def test_totals_add_up_across_shards_like_one_pass(reference: np.ndarray) -> None:
    cases = [
        case_scores(np.roll(reference, s, axis=0), reference, [1, 2], (1.0, 1.0, 1.0))
        for s in range(4)
    ]
    whole = totals_to_means(score_totals(cases, [1, 2]), [1, 2])
    halves = score_totals(cases[::2], [1, 2]) + score_totals(cases[1::2], [1, 2])
    sharded = totals_to_means(halves, [1, 2])
    for label in (1, 2):
        assert sharded[label] == pytest.approx(whole[label], abs=1e-12)
    expected = np.mean([[c[v].dice for c in cases] for v in (1, 2)])
    assert mean_dice(whole) == pytest.approx(expected, abs=1e-12)
