"""A pluggable learned deterioration score, run in one batch over every bed that is due.

No outcome labels ship with medverse, so no learned model here is validated clinically: the
bundled `ReferenceModel` is an untrained logistic curve over distances from normal values, a
placeholder that exercises the plumbing. Plug in a model trained and validated locally (site
data, alert-burden checks) with `load_model("package.module:attribute")`. NEWS2 stays the
score of record.
"""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from medverse.core.errors import ConfigError
from medverse.icu.parameters import PARAMETERS

CAVEAT = (
    "not clinically validated: no outcome labels ship with medverse; validate and calibrate "
    "on local data before any clinical use"
)
# Feature layout: the 7 latest values (missing filled with a normal value), 7 missing flags,
# and the NEWS2 floor.
FEATURES = 2 * len(PARAMETERS) + 1
NORMAL = np.asarray([16.0, 97.0, 0.0, 120.0, 75.0, 0.0, 37.0])
SPREAD = np.asarray([6.0, 4.0, 1.0, 25.0, 20.0, 1.0, 1.0])


@runtime_checkable
class DeteriorationModel(Protocol):
    """What a learned score provides: a name and a batch prediction in [0, 1]."""

    name: str

    def predict(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scores for (beds, `FEATURES`) features, one per bed, in [0, 1]."""
        ...


def features(latest: NDArray[np.float64], news2_floor: NDArray[np.int16]) -> NDArray[np.float64]:
    """Build the (beds, `FEATURES`) matrix from latest values and NEWS2 floors."""
    missing = ~np.isfinite(latest)
    filled = np.where(missing, NORMAL, latest)
    return np.concatenate([filled, missing.astype(np.float64), news2_floor[:, None]], axis=1)


class ReferenceModel:
    """An untrained placeholder: logistic of the summed squared z-distances from normal."""

    name = "reference-untrained"

    def predict(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scores in [0, 1]; grows with distance from normal and with the NEWS2 floor."""
        values = features[:, : len(PARAMETERS)]
        distance = (((values - NORMAL) / SPREAD) ** 2).sum(axis=1)
        floor = features[:, -1]
        return 1.0 / (1.0 + np.exp(-(0.15 * distance + 0.4 * floor - 4.0)))


def load_model(spec: str) -> DeteriorationModel:
    """Import ``module:attribute`` (a model object, or a class/factory called with no args).

    Raises:
        ConfigError: If it cannot be imported or does not look like a `DeteriorationModel`.
    """
    module_name, _, attribute = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"cannot load deterioration model {spec!r}: {error}") from error
    model = target
    if isinstance(target, type) or (callable(target) and not hasattr(target, "predict")):
        try:
            model = target()
        except TypeError as error:
            raise ConfigError(f"cannot create deterioration model {spec!r}: {error}") from error
    if not isinstance(model, DeteriorationModel):
        raise ConfigError(f"{spec!r} has no name and predict(features) method")
    return model


class BatchScorer:
    """Runs the model once per batch over the beds whose last score is older than ``interval``.

    Args:
        model: The model.
        interval: Seconds between two scores of one bed.
    """

    def __init__(self, model: DeteriorationModel, interval: float = 60.0) -> None:
        self.model = model
        self.interval = interval
        self.last = np.zeros(0)
        self.calls = 0

    def score(
        self, rows: NDArray[np.intp], times: NDArray[np.float64], latest: NDArray[np.float64],
        news2_floor: NDArray[np.int16],
    ) -> NDArray[np.float64]:  # fmt: skip
        """Scores per item (NaN where the bed was not due); one model call for all due beds."""
        if rows.size and rows.max() >= self.last.size:
            grown = np.full(max(2 * self.last.size, int(rows.max()) + 1), -np.inf)
            grown[: self.last.size] = self.last
            self.last = grown
        due = times - self.last[rows] >= self.interval
        out = np.full(rows.size, np.nan)
        if due.any():
            self.calls += 1
            predicted = self.model.predict(features(latest[due], news2_floor[due]))
            out[due] = np.clip(np.asarray(predicted, dtype=np.float64), 0.0, 1.0)
            self.last[rows[due]] = times[due]
        return out
