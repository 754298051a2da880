"""Cross-site evaluation: AUROC/AUPRC with bootstrap CIs and calibration, per candidate model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from medverse.decision.calibration import brier_score, expected_calibration_error
from medverse.decision.candidates import (
    CalibratedModel,
    ModelKind,
    ModelSettings,
    fit_calibrated,
)
from medverse.decision.data import Table
from medverse.decision.prior_shift import bbse_prior, estimate_prior
from medverse.decision.recalibration import method_probabilities


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (rank formula, ties averaged)."""
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve (average precision)."""
    from sklearn.metrics import average_precision_score

    if labels.min() == labels.max():
        return float("nan")
    return float(average_precision_score(labels, scores))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def text(self) -> str:
        """``0.812 [0.771, 0.850]``."""
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_indices(labels: np.ndarray, rounds: int, seed: int) -> list[np.ndarray]:
    """Resamples stratified by outcome (each keeps both classes), shared by all models."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    return [
        np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        for _ in range(rounds)
    ]


def with_interval(
    metric: Callable[[np.ndarray, np.ndarray], float],
    labels: np.ndarray,
    scores: np.ndarray,
    resamples: Sequence[np.ndarray],
    level: float = 0.95,
) -> Interval:
    """Return ``metric`` on all patients with its bootstrap interval over ``resamples``."""
    values = np.array([metric(labels[i], scores[i]) for i in resamples])
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return Interval(metric(labels, scores), float(low), float(high))


@dataclass(frozen=True)
class ShiftScores:
    """Calibration after a test-time prior-shift correction.

    Attributes:
        prevalence: The prevalence estimated from the unlabelled test patients.
        ece: ECE of the corrected probabilities.
        brier: Brier score of the corrected probabilities.
        probs: Corrected probability per test patient.
    """

    prevalence: float
    ece: float
    brier: float
    probs: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, float]:
        """JSON-friendly."""
        return {"estimated_prevalence": self.prevalence, "ece": self.ece, "brier": self.brier}


def shift_scores(
    model: CalibratedModel, calibrated: np.ndarray, y: np.ndarray
) -> dict[str, ShiftScores]:
    """EM and BBSE corrections of ``calibrated``; ``y`` is used for scoring only."""
    result = {}
    for estimate in (
        estimate_prior(calibrated, model.train_prevalence),
        bbse_prior(calibrated, model.train_prevalence, model.rates),
    ):
        probs = estimate.adjust(calibrated)
        result[estimate.method] = ShiftScores(
            estimate.prevalence, expected_calibration_error(probs, y), brier_score(probs, y), probs
        )
    return result


@dataclass(frozen=True)
class ModelScores:
    """One model's results on one test set.

    Attributes:
        kind: Which model.
        auroc: AUROC with CI (calibration does not change the ranking).
        auprc: AUPRC with CI.
        ece_raw: ECE of the uncalibrated risk.
        ece: ECE after Platt scaling fitted on the training sites.
        brier: Brier score after calibration.
        calibrated: Calibrated probabilities per test patient (for the diagram).
        shifted: Per prior-shift method (``em``, ``bbse``), the correction to the prevalence
            estimated from the unlabelled test patients (``prior_shift``).
        methods: Per calibration method (``recalibration.CalibrationMethod``), its ECE, Brier
            and probabilities; ``prevalence`` is the mean probability it gives.
    """

    kind: ModelKind
    auroc: Interval
    auprc: Interval
    ece_raw: float
    ece: float
    brier: float
    calibrated: np.ndarray = field(repr=False)
    shifted: dict[str, ShiftScores] = field(default_factory=dict)
    methods: dict[str, ShiftScores] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, without the per-patient probabilities."""
        skip = ("calibrated", "shifted", "methods")
        data = {k: v for k, v in asdict(self).items() if k not in skip}
        data["kind"] = str(self.kind)
        data["prior_shift"] = {m: r.to_dict() for m, r in self.shifted.items()}
        data["calibration_methods"] = {m: r.to_dict() for m, r in self.methods.items()}
        return data


@dataclass(frozen=True)
class SplitResult:
    """All models on one train/test split of sites."""

    train_sites: tuple[str, ...]
    test_sites: tuple[str, ...]
    labels: np.ndarray = field(repr=False)
    scores: dict[ModelKind, ModelScores]

    def best(self, kinds: Sequence[ModelKind]) -> ModelScores:
        """The model with the highest AUROC among ``kinds``."""
        return max((self.scores[k] for k in kinds), key=lambda s: s.auroc.value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return {
            "train_sites": list(self.train_sites),
            "test_sites": list(self.test_sites),
            "test_patients": len(self.labels),
            "test_prevalence": round(float(self.labels.mean()), 4),
            "models": {str(k): s.to_dict() for k, s in self.scores.items()},
        }


@dataclass(frozen=True)
class EvalConfig:
    """How a split is evaluated.

    Attributes:
        settings: Per model, how it is built and trained (default settings when absent).
        folds: Folds for the out-of-fold calibration logits.
        bootstrap: Bootstrap resamples for the intervals.
        seed: Seed of the resamples.
    """

    settings: Mapping[ModelKind, ModelSettings] = field(default_factory=dict)
    folds: int = 5
    bootstrap: int = 1000
    seed: int = 0

    def for_model(self, kind: ModelKind) -> ModelSettings:
        """The settings of ``kind``."""
        return self.settings.get(kind, ModelSettings())


def evaluate_split(
    table: Table,
    train_sites: Sequence[str],
    test_sites: Sequence[str],
    kinds: Sequence[ModelKind] = tuple(ModelKind),
    config: EvalConfig | None = None,
    on_model: Callable[[ModelKind], None] | None = None,
) -> SplitResult:
    """Fit each model (and its calibration) on ``train_sites``; score it on ``test_sites``.

    Nothing about the test sites, labels included, is used before scoring.
    """
    config = config or EvalConfig()
    train, test = table.select(tuple(train_sites)), table.select(tuple(test_sites))
    resamples = bootstrap_indices(test.labels, config.bootstrap, config.seed)
    scores: dict[ModelKind, ModelScores] = {}
    for kind in kinds:
        if on_model is not None:
            on_model(kind)
        model = fit_calibrated(kind, train, config.for_model(kind), config.folds)
        scores[kind] = score_model(model, test, resamples)
    return SplitResult(tuple(train_sites), tuple(test_sites), test.labels, scores)


def score_model(model: CalibratedModel, test: Table, resamples: list[np.ndarray]) -> ModelScores:
    """Score a fitted model on the test patients.

    The prior-shift correction sees only the test patients' features (through the model's
    calibrated probabilities); their labels are used for scoring alone.
    """
    raw, calibrated = model.probabilities(test.features)
    y = test.labels
    methods = {
        str(m): ShiftScores(float(p.mean()), expected_calibration_error(p, y), brier_score(p, y), p)
        for m, p in method_probabilities(model, test.features, test.sites).items()
    }
    return ModelScores(
        model.kind,
        with_interval(auroc, y, raw, resamples),
        with_interval(auprc, y, raw, resamples),
        expected_calibration_error(raw, y),
        expected_calibration_error(calibrated, y),
        brier_score(calibrated, y),
        calibrated,
        shift_scores(model, calibrated, y),
        methods,
    )


def paired_auroc_difference(
    split: SplitResult, first: ModelKind, second: ModelKind, rounds: int = 1000, seed: int = 0
) -> Interval:
    """AUROC(first) - AUROC(second) on the same resamples (paired bootstrap)."""
    a, b = split.scores[first].calibrated, split.scores[second].calibrated
    y = split.labels

    def difference(labels: np.ndarray, pair: np.ndarray) -> float:
        return auroc(labels, pair[:, 0]) - auroc(labels, pair[:, 1])

    resamples = bootstrap_indices(y, rounds, seed)
    return with_interval(difference, y, np.stack([a, b], axis=1), resamples)


def leave_one_site_out(
    table: Table,
    kinds: Sequence[ModelKind] = tuple(ModelKind),
    config: EvalConfig | None = None,
    on_model: Callable[[ModelKind], None] | None = None,
) -> list[SplitResult]:
    """Hold out each site in turn; train on all others."""
    sites = table.schema.sites
    return [
        evaluate_split(table, [s for s in sites if s != held], [held], kinds, config, on_model)
        for held in sites
    ]
