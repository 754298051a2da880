"""Per-site and mask-matched calibration, the training-sites-only rule, and ECE's uncertainty."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medverse.core.errors import InputError
from medverse.decision.calibration import expected_calibration_error
from medverse.decision.calibration_report import ece_summary, oracle_prior_ece
from medverse.decision.calibration_rule import (
    choose_on_training_sites,
    resample_to_prevalence,
    training_site_evidence,
)
from medverse.decision.candidates import ModelKind, fit_calibrated
from medverse.decision.data import Table
from medverse.decision.evaluation import EvalConfig
from medverse.decision.prior_shift import estimate_prior
from medverse.decision.recalibration import CalibrationMethod, method_probabilities
from medverse.decision.site_adaptation import masked_out_of_fold, per_site


def two_sites(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities calibrated at prevalence 0.4 for two sites at prevalences 0.9 and 0.6."""
    rng = np.random.default_rng(seed)
    sites = np.repeat(np.array(["a", "b"]), 20000)
    labels = (rng.uniform(size=sites.size) < np.where(sites == "a", 0.9, 0.6)).astype(int)
    scores = rng.normal(2.0 * labels - 1.0, 1.0)
    probs = 1 / (1 + np.exp(-(2.0 * scores + np.log(0.4 / 0.6))))
    return probs, labels, sites


def test_per_site_prior_estimates_beat_one_pooled_estimate_for_two_hospitals() -> None:
    probs, labels, sites = two_sites(0)
    pooled = estimate_prior(probs, 0.4).adjust(probs)
    by_site = per_site(sites, lambda rows: estimate_prior(probs[rows], 0.4).adjust(probs[rows]))
    for site, prevalence in (("a", 0.9), ("b", 0.6)):
        assert by_site[sites == site].mean() == pytest.approx(prevalence, abs=0.02)
    assert expected_calibration_error(by_site, labels) < 0.02
    # one pooled estimate can look calibrated on the pooled patients, yet is off at each site
    for site in ("a", "b"):
        rows = sites == site
        off = expected_calibration_error(pooled[rows], labels[rows])
        assert off > 0.05 > expected_calibration_error(by_site[rows], labels[rows])


def test_mask_matching_rescores_training_patients_with_swiss_missing_fields(heart: Table) -> None:
    train, swiss = heart.select(["cleveland", "hungarian"]), heart.select(["switzerland"])
    model = fit_calibrated(ModelKind.LOGISTIC, train, folds=2)
    logits, labels = masked_out_of_fold(model, swiss.features, copies=2)
    assert logits.shape == labels.shape == (2 * len(train.labels),)
    assert model.out_of_fold is not None
    # Switzerland records no cholesterol: hidden, it changes the training patients' logits
    assert not np.allclose(logits[: len(train.labels)], model.out_of_fold.logits)
    test = heart.select(["switzerland", "va"])
    probs = method_probabilities(model, test.features, test.sites)
    assert set(probs) == set(CalibrationMethod)
    for values in probs.values():
        assert values.shape == test.labels.shape and 0.0 <= values.min() <= values.max() <= 1.0
    with pytest.raises(InputError, match="mask matching"):
        masked_out_of_fold(model, swiss.features[:0])


def test_resampling_sets_the_prevalence_and_keeps_the_site_size(heart: Table) -> None:
    hungarian = heart.select(["hungarian"])
    for prevalence in (0.2, 0.8):
        part = resample_to_prevalence(hungarian, prevalence, seed=1)
        assert len(part.labels) == len(hungarian.labels)
        assert part.labels.mean() == pytest.approx(prevalence, abs=1 / len(part.labels))
    assert resample_to_prevalence(hungarian, None, seed=1) is hungarian


def test_rule_reads_only_the_training_sites_and_picks_the_lowest_mean(heart: Table) -> None:
    train = heart.select(["cleveland", "hungarian"])
    rows = training_site_evidence(train, [ModelKind.LOGISTIC], EvalConfig(folds=2))
    assert {r["held_out"] for r in rows} == {"cleveland", "hungarian"}
    assert len(rows) == 2 * 4  # two held-out hospitals x (as is + three prevalences)
    result = choose_on_training_sites(rows)
    assert result["mean_ece"][result["chosen"]] == min(result["mean_ece"].values())
    assert set(result["mean_ece_by_resampled_prevalence"]) == {"None", "0.2", "0.5", "0.8"}
    json.dumps(result)
    with pytest.raises(InputError, match="evidence"):
        choose_on_training_sites([])


def test_ece_summary_gives_an_interval_and_the_noise_floor() -> None:
    probs, labels, sites = two_sites(1)
    keep = np.r_[0:200, 20000:20200]  # 400 patients, as small as the cross-site test set
    probs, labels, sites = probs[keep], labels[keep], sites[keep]
    calibrated = oracle_prior_ece(probs, labels, sites, 0.4)
    summary = ece_summary(probs, labels, sites, rounds=200)
    low, high = summary["ece_ci95"]
    assert low <= summary["ece"] <= high
    assert set(summary["ece_by_site"]) == {"a", "b"}
    floor, _ = summary["ece_noise_floor_mean_p95"]
    # uncorrected probabilities are far off; even well-calibrated ones show an ECE above 0
    assert summary["ece"] > 0.1 and 0.0 < floor < 0.1 and calibrated < summary["ece"]
    # equal-mass bins agree with equal-width ones on a large, calibrated sample
    big_probs, big_labels, _ = two_sites(2)
    fixed = per_site(
        np.repeat(np.array(["a", "b"]), 20000),
        lambda rows: estimate_prior(big_probs[rows], 0.4).adjust(big_probs[rows]),
    )
    assert expected_calibration_error(fixed, big_labels, equal_mass=True) < 0.03
