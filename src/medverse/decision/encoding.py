"""Turn schema features into model columns: standardised numbers and one-hot codes, NaN kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medverse.core.errors import ModelError
from medverse.decision.schema import FeatureKind, TaskSchema


@dataclass(frozen=True)
class Encoder:
    """Column encoding fitted on the training patients only.

    Continuous features are standardised with the mean and spread of their *recorded* values;
    binary features stay 0/1; categorical features become one column per code. A missing
    feature stays NaN in every column it owns: the model sees it as missing (mask) and
    substitutes its learned default, never a silent zero.

    Attributes:
        schema: The task.
        means: Per feature, the mean of the recorded training values (0 for codes).
        scales: Per feature, the standard deviation of those values (1 for codes).
    """

    schema: TaskSchema
    means: tuple[float, ...]
    scales: tuple[float, ...]

    @classmethod
    def fit(cls, schema: TaskSchema, features: np.ndarray) -> Encoder:
        """Fit on training rows ``[patients, features]`` (NaN = missing)."""
        means, scales = [], []
        for column, feature in enumerate(schema.features):
            values = features[:, column]
            values = values[~np.isnan(values)]
            if feature.kind != FeatureKind.CONTINUOUS or values.size < 2:
                means.append(0.0)
                scales.append(1.0)
                continue
            means.append(float(values.mean()))
            scales.append(float(values.std()) or 1.0)
        return cls(schema, tuple(means), tuple(scales))

    @property
    def column_names(self) -> list[str]:
        """Names of the encoded columns (``cp=4`` for a one-hot code)."""
        names: list[str] = []
        for feature in self.schema.features:
            if feature.kind == FeatureKind.CATEGORICAL:
                names.extend(f"{feature.name}={level}" for level in feature.levels)
            else:
                names.append(feature.name)
        return names

    @property
    def column_feature(self) -> list[int]:
        """For each encoded column, the index of the feature it comes from."""
        owners: list[int] = []
        for index, feature in enumerate(self.schema.features):
            width = len(feature.levels) if feature.kind == FeatureKind.CATEGORICAL else 1
            owners.extend([index] * width)
        return owners

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Encode ``[patients, features]`` into ``[patients, columns]`` float32 (NaN kept)."""
        if features.ndim != 2 or features.shape[1] != len(self.schema.features):
            raise ModelError(
                f"expected [patients, {len(self.schema.features)}] features, got {features.shape}"
            )
        parts = []
        for column, feature in enumerate(self.schema.features):
            values = features[:, column]
            if feature.kind == FeatureKind.CATEGORICAL:
                codes = np.asarray(feature.levels, dtype=np.float64)
                one_hot = (values[:, None] == codes[None, :]).astype(np.float64)
                one_hot[np.isnan(values)] = np.nan
                parts.append(one_hot)
            else:
                parts.append(((values - self.means[column]) / self.scales[column])[:, None])
        return np.concatenate(parts, axis=1).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Return the fitted numbers (the schema is stored by name)."""
        return {"task": self.schema.name, "means": list(self.means), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, schema: TaskSchema, data: dict[str, Any]) -> Encoder:
        """Rebuild from ``to_dict``'s output."""
        if data.get("task") != schema.name or len(data["means"]) != len(schema.features):
            raise ModelError(f"stored encoder does not fit task {schema.name}")
        return cls(schema, tuple(data["means"]), tuple(data["scales"]))
