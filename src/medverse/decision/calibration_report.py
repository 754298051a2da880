"""How sure an ECE figure is: bootstrap interval, equal-mass bins, per site, the noise floor.

With a few hundred test patients ECE is noisy and biased upwards: even perfectly calibrated
probabilities show an ECE above 0 (the *noise floor*, estimated by drawing outcomes from the
probabilities themselves). ``oracle_prior_ece`` is a diagnostic only: it reads the test
outcomes (each site's observed prevalence), so it can never be a method; it shows how much of
the error a perfect prevalence estimate would remove.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medverse.decision.calibration import expected_calibration_error
from medverse.decision.prior_shift import shift_prior


def stratified_resamples(strata: np.ndarray, rounds: int, seed: int) -> list[np.ndarray]:
    """Bootstrap resamples that keep every stratum's size (e.g. site x outcome)."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    return [np.concatenate([rng.choice(g, len(g)) for g in groups]) for _ in range(rounds)]


def ece_summary(
    probs: np.ndarray, labels: np.ndarray, sites: np.ndarray, rounds: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """ECE (10 equal-width bins) with a 95 % bootstrap interval and the figures that qualify it.

    Args:
        probs: Calibrated probability per test patient.
        labels: Outcome per test patient.
        sites: Hospital per test patient. Resamples keep each site's size but not its
            outcome counts: a new sample's prevalence varies too, and with probabilities near
            0 or 1 that variation is most of ECE's noise.
        rounds: Bootstrap resamples (also the draws for the noise floor).
        seed: Seed of both.
    """
    probs, labels, sites = np.asarray(probs), np.asarray(labels), np.asarray(sites)
    values = [
        expected_calibration_error(probs[i], labels[i])
        for i in stratified_resamples(sites, rounds, seed)
    ]
    rng = np.random.default_rng(seed + 1)
    floor = [
        expected_calibration_error(probs, (rng.uniform(size=probs.size) < probs).astype(int))
        for _ in range(rounds)
    ]
    return {
        "ece": expected_calibration_error(probs, labels),
        "ece_ci95": [float(v) for v in np.percentile(values, [2.5, 97.5])],
        "ece_equal_mass": expected_calibration_error(probs, labels, equal_mass=True),
        "ece_by_site": {
            str(s): expected_calibration_error(probs[sites == s], labels[sites == s])
            for s in np.unique(sites)
        },
        "mean_probability_by_site": {
            str(s): float(probs[sites == s].mean()) for s in np.unique(sites)
        },
        "observed_prevalence_by_site": {
            str(s): float(labels[sites == s].mean()) for s in np.unique(sites)
        },
        "ece_noise_floor_mean_p95": [float(np.mean(floor)), float(np.percentile(floor, 95))],
    }


def oracle_prior_ece(
    platt: np.ndarray, labels: np.ndarray, sites: np.ndarray, train_prevalence: float
) -> float:
    """ECE after moving each site's Platt probabilities to its *observed* prevalence (oracle)."""
    shifted = np.empty(len(platt))
    for site in np.unique(sites):
        rows = sites == site
        shifted[rows] = shift_prior(platt[rows], train_prevalence, float(labels[rows].mean()))
    return expected_calibration_error(shifted, labels)
