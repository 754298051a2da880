"""Calibration methods compared at a new site: none, Platt, temperature, isotonic, prior shift.

Every method is fitted on the training sites only (the scalers on out-of-fold training
logits). The two label-shift-aware methods also read the new site's *unlabelled* patients:
Platt-calibrated probabilities re-weighted to the prevalence estimated from them by EM
(Saerens et al. 2002) or BBSE (Lipton et al. 2018), see ``prior_shift``. That information is
available at a real new site before any outcome is known, so the methods are legitimate there.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from medverse.decision.calibration import sigmoid
from medverse.decision.candidates import CalibratedModel
from medverse.decision.prior_shift import bbse_prior, estimate_prior


class CalibrationMethod(StrEnum):
    """How a model's logits become the probability reported at the new site."""

    NONE = "none"  # the network's own sigmoid / the classifier's decision function
    PLATT = "platt"
    TEMPERATURE = "temperature"
    ISOTONIC = "isotonic"
    PLATT_EM = "platt+em"
    PLATT_BBSE = "platt+bbse"


def method_probabilities(
    model: CalibratedModel, features: np.ndarray
) -> dict[CalibrationMethod, np.ndarray]:
    """Each method's probabilities for the new site's patients ``features`` (no labels)."""
    logits = model.scorer.logits(features)
    platt = model.calibration(logits)
    em = estimate_prior(platt, model.train_prevalence)
    bbse = bbse_prior(platt, model.train_prevalence, model.rates)
    return {
        CalibrationMethod.NONE: sigmoid(logits),
        CalibrationMethod.PLATT: platt,
        CalibrationMethod.TEMPERATURE: model.temperature(logits),
        CalibrationMethod.ISOTONIC: model.isotonic(logits),
        CalibrationMethod.PLATT_EM: em.adjust(platt),
        CalibrationMethod.PLATT_BBSE: bbse.adjust(platt),
    }
