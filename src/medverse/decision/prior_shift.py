"""Test-time label-shift correction: estimate a new site's prevalence from unlabelled patients.

A model calibrated at the training sites gives ``p(y=1 | x)`` under the training prevalence
``pi_train``. If only the prevalence changes at a new site (label shift: ``p(x | y)`` the same),
its posteriors are those probabilities re-weighted by ``pi_new / pi_train`` and
``(1 - pi_new) / (1 - pi_train)``; ``pi_new`` can be estimated from the site's *unlabelled*
features by expectation-maximisation:

    M. Saerens, P. Latinne, C. Decaestecker, "Adjusting the outputs of a classifier to new
    a priori probabilities: a simple procedure", Neural Computation 14(1):21-41, 2002.

The confusion-matrix alternative, black-box shift estimation (BBSE),

    Z. C. Lipton, Y.-X. Wang, A. J. Smola, "Detecting and correcting for label shift with
    black box predictors", ICML 2018,

needs only that ``p(prediction | y)`` carries over: with the true- and false-positive rates
measured on out-of-fold *training* predictions, the new site's share of positive predictions
``q`` gives ``pi_new = (q - FPR) / (TPR - FPR)`` (clipped to [0, 1]). EM trusts the calibrated
probabilities themselves and overshoots when they are over-confident at the new site; BBSE
uses them only through a threshold. Labels of the new site are never read by either: they see
its patients' calibrated probabilities only. When the shift is not purely in the prevalence
(here missing fields and other case mixes also differ), both estimates are biased, so the
evaluation reports them next to the observed prevalence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logit

from medverse.core.errors import InputError
from medverse.decision.calibration import sigmoid

_EDGE = 1e-6


@dataclass(frozen=True)
class PriorEstimate:
    """The EM estimate of a site's prevalence.

    Attributes:
        train_prevalence: Prevalence the calibrated probabilities assume.
        prevalence: Estimated prevalence at the new site.
        method: ``em`` or ``bbse``.
        iterations: EM steps taken (0 for BBSE).
        converged: Whether EM's change fell below the tolerance (True for BBSE).
    """

    train_prevalence: float
    prevalence: float
    method: str = "em"
    iterations: int = 0
    converged: bool = True

    def adjust(self, probs: np.ndarray) -> np.ndarray:
        """Return the probabilities re-weighted from the training to the estimated prevalence."""
        return shift_prior(probs, self.train_prevalence, self.prevalence)


def shift_prior(probs: np.ndarray, old: float, new: float) -> np.ndarray:
    """Bayes re-weighting of posteriors from prevalence ``old`` to ``new`` (in logit space)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EDGE, 1 - _EDGE)
    old, new = float(np.clip(old, _EDGE, 1 - _EDGE)), float(np.clip(new, _EDGE, 1 - _EDGE))
    return sigmoid(logit(p) + logit(new) - logit(old))


def estimate_prior(
    probs: np.ndarray, train_prevalence: float, tol: float = 1e-6, max_iter: int = 1000
) -> PriorEstimate:
    """Saerens-Latinne-Decaestecker EM estimate of the prevalence behind ``probs``.

    Args:
        probs: Calibrated ``p(y=1 | x)`` (at the training prevalence) of the new site's
            patients; their labels are not needed.
        train_prevalence: Prevalence of the training patients the calibration was fitted on.
        tol: Stop when the estimate moves less than this.
        max_iter: Most EM steps.

    Raises:
        InputError: If there are no probabilities or the training prevalence is not in (0, 1).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size == 0 or not 0.0 < train_prevalence < 1.0:
        raise InputError(
            f"prior estimation needs probabilities and a prevalence in (0, 1), got "
            f"{probs.size} probabilities and {train_prevalence}"
        )
    prevalence = train_prevalence
    for step in range(1, max_iter + 1):
        updated = float(shift_prior(probs, train_prevalence, prevalence).mean())  # E then M
        if abs(updated - prevalence) < tol:
            return PriorEstimate(train_prevalence, updated, "em", step, True)
        prevalence = updated
    return PriorEstimate(train_prevalence, prevalence, "em", max_iter, False)


@dataclass(frozen=True)
class ConfusionRates:
    """True- and false-positive rates of ``probability > threshold`` on training patients.

    Attributes:
        tpr: Share of positives predicted positive.
        fpr: Share of negatives predicted positive.
        threshold: The probability cut.
    """

    tpr: float
    fpr: float
    threshold: float = 0.5

    @classmethod
    def measure(
        cls, probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5
    ) -> ConfusionRates:
        """Measure on out-of-fold training probabilities and their labels."""
        positive = np.asarray(probs) > threshold
        return cls(
            float(positive[labels == 1].mean()), float(positive[labels == 0].mean()), threshold
        )


def bbse_prior(probs: np.ndarray, train_prevalence: float, rates: ConfusionRates) -> PriorEstimate:
    """Lipton et al. (2018) BBSE estimate of the prevalence behind unlabelled ``probs``.

    Raises:
        InputError: If there are no probabilities, or the training predictions do not
            separate the classes (TPR <= FPR), so the confusion matrix cannot be inverted.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size == 0 or rates.tpr <= rates.fpr:
        raise InputError(
            f"BBSE needs probabilities and TPR > FPR, got {probs.size} probabilities, "
            f"TPR {rates.tpr:.3f}, FPR {rates.fpr:.3f}"
        )
    share = float((probs > rates.threshold).mean())
    prevalence = float(np.clip((share - rates.fpr) / (rates.tpr - rates.fpr), 0.0, 1.0))
    return PriorEstimate(train_prevalence, prevalence, "bbse")
