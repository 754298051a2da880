"""Calibration methods compared at a new site: none, Platt, temperature, isotonic, prior shift.

Every method is fitted on the training sites only (the scalers on out-of-fold training
logits). The two label-shift-aware methods also read the new site's *unlabelled* patients:
Platt-calibrated probabilities re-weighted to the prevalence estimated from them by EM
(Saerens et al. 2002) or BBSE (Lipton et al. 2018), see ``prior_shift``. That information is
available at a real new site before any outcome is known, so the methods are legitimate there.
The ``/site`` methods do it per hospital (each its own prevalence estimate); the ``masked-``
ones also refit Platt scaling and the BBSE rates on training patients re-scored with that
hospital's missing fields (``site_adaptation``).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from medverse.decision.calibration import sigmoid
from medverse.decision.candidates import CalibratedModel
from medverse.decision.prior_shift import bbse_prior, estimate_prior
from medverse.decision.site_adaptation import MaskMatched, per_site


class CalibrationMethod(StrEnum):
    """How a model's logits become the probability reported at the new site."""

    NONE = "none"  # the network's own sigmoid / the classifier's decision function
    PLATT = "platt"
    TEMPERATURE = "temperature"
    ISOTONIC = "isotonic"
    PLATT_EM = "platt+em"
    PLATT_BBSE = "platt+bbse"
    PLATT_EM_SITE = "platt+em/site"
    PLATT_BBSE_SITE = "platt+bbse/site"
    MASKED_PLATT_SITE = "masked-platt/site"
    MASKED_PLATT_EM_SITE = "masked-platt+em/site"
    MASKED_PLATT_BBSE_SITE = "masked-platt+bbse/site"


def method_probabilities(
    model: CalibratedModel, features: np.ndarray, sites: np.ndarray | None = None
) -> dict[CalibrationMethod, np.ndarray]:
    """Each method's probabilities for the new site's patients ``features`` (no labels).

    Args:
        model: A model from ``fit_calibrated``.
        features: The new patients (NaN = missing).
        sites: Their hospital per row (the ``/site`` methods adapt per hospital); one site
            when omitted.
    """
    sites = np.zeros(len(features), dtype=int) if sites is None else np.asarray(sites)
    logits = model.scorer.logits(features)
    platt = model.calibration(logits)
    prevalence = model.train_prevalence
    em = estimate_prior(platt, prevalence)
    bbse = bbse_prior(platt, prevalence, model.rates)
    matched = {site: MaskMatched.fit(model, features[sites == site]) for site in np.unique(sites)}

    def masked(rows: np.ndarray) -> np.ndarray:
        return matched[sites[rows][0]].platt(logits[rows])

    def masked_bbse(rows: np.ndarray) -> np.ndarray:
        fitted = matched[sites[rows][0]]
        return bbse_prior(masked(rows), prevalence, fitted.rates).adjust(masked(rows))

    return {
        CalibrationMethod.NONE: sigmoid(logits),
        CalibrationMethod.PLATT: platt,
        CalibrationMethod.TEMPERATURE: model.temperature(logits),
        CalibrationMethod.ISOTONIC: model.isotonic(logits),
        CalibrationMethod.PLATT_EM: em.adjust(platt),
        CalibrationMethod.PLATT_BBSE: bbse.adjust(platt),
        CalibrationMethod.PLATT_EM_SITE: per_site(
            sites, lambda r: estimate_prior(platt[r], prevalence).adjust(platt[r])
        ),
        CalibrationMethod.PLATT_BBSE_SITE: per_site(
            sites, lambda r: bbse_prior(platt[r], prevalence, model.rates).adjust(platt[r])
        ),
        CalibrationMethod.MASKED_PLATT_SITE: per_site(sites, masked),
        CalibrationMethod.MASKED_PLATT_EM_SITE: per_site(
            sites, lambda r: estimate_prior(masked(r), prevalence).adjust(masked(r))
        ),
        CalibrationMethod.MASKED_PLATT_BBSE_SITE: per_site(sites, masked_bbse),
    }
