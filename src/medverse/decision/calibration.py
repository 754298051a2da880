"""Post-hoc calibration (Platt, temperature, isotonic) and its measures: ECE, Brier, reliability."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

from medverse.core.errors import InputError
from medverse.io.atomic import atomic_path


@dataclass(frozen=True)
class PlattScaling:
    """``p = sigmoid(slope * logit + intercept)``, fitted on out-of-fold training logits.

    Attributes:
        slope: Multiplies the model's logit.
        intercept: Added after scaling.
    """

    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> PlattScaling:
        """Fit by (lightly regularised) logistic regression of the labels on the logits."""
        from sklearn.linear_model import LogisticRegression

        if len(np.unique(labels)) < 2:
            raise InputError("calibration needs both outcomes among the training patients")
        model = LogisticRegression(C=1e4).fit(logits.reshape(-1, 1), labels)
        return cls(float(model.coef_[0, 0]), float(model.intercept_[0]))

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities."""
        return sigmoid(self.slope * np.asarray(logits, dtype=np.float64) + self.intercept)


@dataclass(frozen=True)
class TemperatureScaling:
    """``p = sigmoid(logit / temperature)``: one scale, no shift (Guo et al. 2017).

    Attributes:
        temperature: Divides the model's logit (fitted by likelihood on out-of-fold logits).
    """

    temperature: float = 1.0

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> TemperatureScaling:
        """Fit the temperature by maximum likelihood (search over log-temperature)."""
        from scipy.optimize import minimize_scalar

        x, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)

        def nll(log_t: float) -> float:
            z = x / np.exp(log_t)
            return float(np.mean(np.logaddexp(0.0, z) - y * z))

        best = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded")
        return cls(float(np.exp(best.x)))

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities."""
        return sigmoid(np.asarray(logits, dtype=np.float64) / self.temperature)


@dataclass(frozen=True)
class IsotonicCalibration:
    """A monotone step map from logit to probability, fitted on out-of-fold logits.

    Attributes:
        logits: Knots (increasing); beyond the ends the end values hold.
        probs: Probability at each knot (linear in between).
    """

    logits: tuple[float, ...]
    probs: tuple[float, ...]

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> IsotonicCalibration:
        """Fit isotonic regression of the labels on the logits (scikit-learn)."""
        from sklearn.isotonic import IsotonicRegression

        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        model.fit(np.asarray(logits, dtype=np.float64), labels)
        return cls(tuple(map(float, model.X_thresholds_)), tuple(map(float, model.y_thresholds_)))

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities."""
        return np.interp(np.asarray(logits, dtype=np.float64), self.logits, self.probs)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return np.asarray(expit(np.asarray(logits, dtype=np.float64)))


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, bins: int = 10, equal_mass: bool = False
) -> float:
    """ECE: sum over bins of |observed - predicted| x share of patients.

    Args:
        probs: Predicted probabilities.
        labels: Outcomes 0/1.
        bins: Number of bins.
        equal_mass: Bins of (nearly) equal patient counts by sorted probability instead of
            ``bins`` equal-width bins of [0, 1] (the default, Guo et al. 2017).
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if equal_mass:
        groups = np.array_split(np.argsort(probs, kind="stable"), bins)
    else:
        index = np.clip(np.digitize(probs, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
        groups = [np.flatnonzero(index == b) for b in range(bins)]
    return float(
        sum(len(g) * abs(labels[g].mean() - probs[g].mean()) for g in groups if len(g))
        / max(len(probs), 1)
    )


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared difference between the probability and the outcome."""
    return float(np.mean((probs - labels) ** 2))


def reliability_curve(
    probs: np.ndarray, labels: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per non-empty bin: mean predicted probability, observed rate, patient count."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    rows = [
        (probs[index == b].mean(), labels[index == b].mean(), (index == b).sum())
        for b in range(bins)
        if (index == b).any()
    ]
    predicted, observed, counts = (np.asarray(col) for col in zip(*rows))
    return predicted, observed, counts


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, bins: int = 10
) -> Path:
    """Write a reliability diagram PNG with one line per model.

    Args:
        curves: Model name -> (probabilities, labels).
        path: Where to write the PNG (atomically).
        title: Plot title.
        bins: Equal-width bins.
    """
    return plot_reliability_panels({title: curves}, path, bins)


def plot_reliability_panels(
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], path: Path, bins: int = 10
) -> Path:
    """Write side-by-side reliability diagrams (e.g. before / after a correction) as a PNG.

    Args:
        panels: Panel title -> (model name -> (probabilities, labels)).
        path: Where to write the PNG (atomically).
        bins: Equal-width bins.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
        for name, (probs, labels) in curves.items():
            predicted, observed, _ = reliability_curve(probs, labels, bins)
            ece = expected_calibration_error(probs, labels, bins)
            ax.plot(predicted, observed, marker="o", label=f"{name} (ECE {ece:.3f})")
        ax.set(xlabel="predicted probability", ylabel="observed rate", xlim=(0, 1), ylim=(0, 1))
        ax.set_title(title, fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
