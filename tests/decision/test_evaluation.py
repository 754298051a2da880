"""Metrics: AUROC agrees with scikit-learn, ECE and Brier on known cases, bootstrap intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medverse.decision.calibration import (
    PlattScaling,
    brier_score,
    expected_calibration_error,
    plot_reliability,
)
from medverse.decision.evaluation import auroc, bootstrap_indices, with_interval


def test_auroc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_calibrated_probabilities_have_small_ece_and_shifted_ones_do_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    probs = rng.uniform(0, 1, 20000)
    labels = (rng.uniform(0, 1, probs.size) < probs).astype(int)
    assert expected_calibration_error(probs, labels) < 0.02
    assert expected_calibration_error(np.clip(probs + 0.2, 0, 1), labels) > 0.15
    assert brier_score(labels.astype(float), labels) == 0.0
    png = plot_reliability({"model": (probs, labels)}, tmp_path / "rel.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_platt_scaling_recovers_a_known_miscalibration() -> None:
    rng = np.random.default_rng(2)
    true_logit = rng.normal(0, 2, 20000)
    labels = (rng.uniform(size=true_logit.size) < 1 / (1 + np.exp(-true_logit))).astype(int)
    platt = PlattScaling.fit(true_logit * 2.0 + 1.0, labels)  # an overconfident, biased model
    assert platt.slope == pytest.approx(0.5, abs=0.05)
    assert platt.intercept == pytest.approx(-0.5, abs=0.1)


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(labels, 1.0)
    interval = with_interval(auroc, labels, scores, bootstrap_indices(labels, 200, 0))
    assert interval.low < interval.value < interval.high
    assert interval.high - interval.low < 0.2
