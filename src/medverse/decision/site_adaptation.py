"""Test-time adaptation to a new site from its unlabelled patients: missing fields, per site.

A hospital's records lack fields the training hospitals had (Switzerland: no cholesterol; VA:
few exercise-test and imaging fields), so the model's logits there come from other inputs than
the out-of-fold logits its calibration was fitted on, and the confusion rates BBSE inverts do
not carry over. *Mask matching* re-scores every training patient with the missing-field pattern
of a randomly drawn patient of the new site (by the fold model that did not see it, so still
out of fold) and fits Platt scaling and the BBSE confusion rates on those logits. Only which
fields the new site lacks is read from it, never an outcome: information a real site has before
any outcome is known (test-time adaptation). Every correction is made per site, so two pooled
hospitals with different prevalences each get their own estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medverse.core.errors import InputError
from medverse.decision.calibration import PlattScaling
from medverse.decision.candidates import CalibratedModel
from medverse.decision.prior_shift import ConfusionRates

COPIES = 4  # each training patient re-scored under this many drawn missing-field patterns


def masked_out_of_fold(
    model: CalibratedModel, site_features: np.ndarray, copies: int = COPIES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold logits of the training patients with a new site's fields hidden.

    Args:
        model: A model from ``fit_calibrated`` (it keeps its fold models).
        site_features: The new site's patients (NaN = missing); only the NaN pattern is read.
        copies: Patterns drawn per training patient.
        seed: Seed of the draws.

    Returns:
        ``(logits, labels)``, ``copies`` x training patients long.

    Raises:
        InputError: If the model has no fold models or the site has no patients.
    """
    if model.train is None or model.out_of_fold is None or len(site_features) == 0:
        raise InputError("mask matching needs a model from fit_calibrated and site patients")
    train, oof = model.train, model.out_of_fold
    missing = np.isnan(np.asarray(site_features, dtype=np.float64))
    rng = np.random.default_rng(seed)
    n = len(train.labels)
    logits = np.empty(n * copies)
    for copy in range(copies):
        masked = train.features.copy()
        masked[missing[rng.integers(0, len(missing), n)]] = np.nan
        for index, scorer in enumerate(oof.scorers):
            rows = np.flatnonzero(oof.fold == index)
            logits[copy * n + rows] = scorer.logits(masked[rows])
    return logits, np.tile(train.labels, copies)


@dataclass(frozen=True)
class MaskMatched:
    """Platt scaling and BBSE confusion rates fitted for one new site's missing fields.

    Attributes:
        platt: Platt scaling fitted on the mask-matched out-of-fold logits.
        rates: TPR / FPR of those calibrated probabilities at 0.5.
    """

    platt: PlattScaling
    rates: ConfusionRates

    @classmethod
    def fit(cls, model: CalibratedModel, site_features: np.ndarray, seed: int = 0) -> MaskMatched:
        """Fit on the training patients re-scored with ``site_features``' missing fields."""
        logits, labels = masked_out_of_fold(model, site_features, seed=seed)
        platt = PlattScaling.fit(logits, labels)
        return cls(platt, ConfusionRates.measure(platt(logits), labels))


def per_site(sites: np.ndarray, probabilities: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``probabilities(rows)`` to each site's rows (a boolean mask) and join the results."""
    sites = np.asarray(sites)
    result = np.empty(len(sites))
    for site in np.unique(sites):
        rows = sites == site
        result[rows] = probabilities(rows)
    return result
