"""Label-shift correction: EM and BBSE recover a known new prevalence from unlabelled data."""

from __future__ import annotations

import numpy as np
import pytest

from medverse.core.errors import InputError
from medverse.decision.calibration import expected_calibration_error
from medverse.decision.prior_shift import (
    ConfusionRates,
    bbse_prior,
    estimate_prior,
    shift_prior,
)


def sample(prevalence: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores from fixed class-conditionals N(+-1, 1); only the prevalence changes."""
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < prevalence).astype(int)
    return rng.normal(2.0 * labels - 1.0, 1.0), labels


def posterior(scores: np.ndarray, prevalence: float) -> np.ndarray:
    """Exact p(y=1 | score) under ``prevalence`` (log-likelihood ratio of the Gaussians = 2x)."""
    return 1 / (1 + np.exp(-(2.0 * scores + np.log(prevalence / (1 - prevalence)))))


def test_em_and_bbse_recover_a_shifted_prevalence_without_labels() -> None:
    train_scores, train_labels = sample(0.4, 20000, 0)
    test_scores, test_labels = sample(0.8, 20000, 1)
    probs = posterior(test_scores, 0.4)  # calibrated at the training prevalence
    em = estimate_prior(probs, 0.4)
    rates = ConfusionRates.measure(posterior(train_scores, 0.4), train_labels)
    bbse = bbse_prior(probs, 0.4, rates)
    assert em.converged and em.prevalence == pytest.approx(0.8, abs=0.02)
    assert bbse.prevalence == pytest.approx(0.8, abs=0.03)
    before = expected_calibration_error(probs, test_labels)
    after = expected_calibration_error(em.adjust(probs), test_labels)
    assert before > 0.15 and after < 0.03


def test_no_shift_leaves_probabilities_alone_and_bad_input_is_refused() -> None:
    probs = np.array([0.1, 0.5, 0.9])
    assert np.allclose(shift_prior(probs, 0.3, 0.3), probs)
    assert shift_prior(probs, 0.3, 0.6)[1] > 0.5  # a higher prevalence raises every risk
    with pytest.raises(InputError, match="prevalence in"):
        estimate_prior(probs, 1.0)
    with pytest.raises(InputError, match="TPR > FPR"):
        bbse_prior(probs, 0.4, ConfusionRates(0.3, 0.3))
