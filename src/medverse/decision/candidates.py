"""The models compared: the MoE, a dense MLP of equal size, logistic regression, boosting."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
from torch import nn

from medverse.decision.calibration import PlattScaling
from medverse.decision.data import Table
from medverse.decision.encoding import Encoder
from medverse.decision.moe import (
    DenseClassifier,
    MoEClassifier,
    MoEConfig,
    dense_hidden_for,
    parameter_count,
)
from medverse.decision.schema import FeatureKind, TaskSchema
from medverse.decision.training import FitConfig, fit_network, predict_logits


class ModelKind(StrEnum):
    """The candidate models."""

    MOE = "moe"
    DENSE_MLP = "dense_mlp"
    LOGISTIC = "logistic_regression"
    BOOSTING = "gradient_boosting"


BASELINES = (ModelKind.LOGISTIC, ModelKind.BOOSTING, ModelKind.DENSE_MLP)


class Scorer(Protocol):
    """A fitted model: raw features (NaN = missing) in, logits out."""

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Return ``[patients]`` logits."""
        ...


def expert_columns(encoder: Encoder) -> list[list[int]]:
    """Per expert view of the schema, the encoded columns it reads."""
    index = {f.name: i for i, f in enumerate(encoder.schema.features)}
    owners = encoder.column_feature
    views = []
    for view in encoder.schema.experts:
        wanted = {index[name] for name in view.features}
        views.append([col for col, owner in enumerate(owners) if owner in wanted])
    return views


def build_moe(encoder: Encoder, config: MoEConfig) -> MoEClassifier:
    """Return an untrained MoE for the encoder's task."""
    return MoEClassifier(expert_columns(encoder), len(encoder.column_names), config)


@dataclass
class NetworkScorer:
    """A torch network over the shared encoding."""

    encoder: Encoder
    network: nn.Module

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Return logits."""
        return predict_logits(self.network, self.encoder.transform(features))


@dataclass
class SklearnScorer:
    """A scikit-learn classifier over the raw features."""

    model: Any

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Return the decision function (a logit for these models)."""
        return np.asarray(self.model.decision_function(features), dtype=np.float64)


def _logistic(schema: TaskSchema) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    # Mean / most-frequent imputation *with* missing-indicator columns: the same information
    # the networks get from their mask, so the comparison is fair.
    cats = [i for i, f in enumerate(schema.features) if f.kind == FeatureKind.CATEGORICAL]
    nums = [i for i in range(len(schema.features)) if i not in cats]
    numeric = make_pipeline(SimpleImputer(strategy="mean", add_indicator=True), StandardScaler())
    codes = make_pipeline(
        SimpleImputer(strategy="most_frequent", add_indicator=True),
        OneHotEncoder(handle_unknown="ignore"),
    )
    columns = ColumnTransformer([("num", numeric, nums), ("cat", codes, cats)])
    return make_pipeline(columns, LogisticRegression(C=1.0, max_iter=2000))


def _boosting(schema: TaskSchema, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Native missing-value support: NaN goes down the learned side of every split.
    cats = [f.kind == FeatureKind.CATEGORICAL for f in schema.features]
    return HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, categorical_features=cats,
        random_state=seed,
    )  # fmt: skip


def fit_scorer(
    kind: ModelKind, train: Table, fit: FitConfig, moe: MoEConfig | None = None
) -> Scorer:
    """Fit one candidate on the training table.

    The dense MLP gets as many parameters as the MoE built with ``moe`` (to within one
    hidden unit's worth).
    """
    moe = moe or MoEConfig()
    if kind == ModelKind.LOGISTIC:
        return SklearnScorer(_logistic(train.schema).fit(train.features, train.labels))
    if kind == ModelKind.BOOSTING:
        return SklearnScorer(_boosting(train.schema, fit.seed).fit(train.features, train.labels))
    encoder = Encoder.fit(train.schema, train.features)
    values = encoder.transform(train.features)
    if kind == ModelKind.MOE:
        network, _ = fit_network(lambda: build_moe(encoder, moe), values, train.labels, fit)
        return NetworkScorer(encoder, network)
    hidden = dense_hidden_for(len(encoder.column_names), moe_parameter_count(encoder, moe))
    dense = fit_network(
        lambda: DenseClassifier(len(encoder.column_names), hidden), values, train.labels, fit
    )[0]
    return NetworkScorer(encoder, dense)


def moe_parameter_count(encoder: Encoder, config: MoEConfig) -> int:
    """Trainable parameters of the MoE for this encoder."""
    return parameter_count(build_moe(encoder, config))


def out_of_fold_logits(
    kind: ModelKind, train: Table, fit: FitConfig, moe: MoEConfig | None, folds: int
) -> np.ndarray:
    """Logits for every training patient from a model that did not see it (stratified folds).

    Folds are stratified by site and label, so each fold looks like the training sites.
    """
    from sklearn.model_selection import StratifiedKFold

    strata = np.char.add(train.sites.astype(str), train.labels.astype(str))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=fit.seed)
    result = np.zeros(len(train.labels))
    for fit_rows, held_rows in splitter.split(train.features, strata):
        part = Table(
            train.schema, train.features[fit_rows], train.labels[fit_rows], train.sites[fit_rows]
        )
        result[held_rows] = fit_scorer(kind, part, fit, moe).logits(train.features[held_rows])
    return result


@dataclass
class CalibratedModel:
    """A fitted model and its Platt scaling, both from the training sites only."""

    kind: ModelKind
    scorer: Scorer
    calibration: PlattScaling

    def probabilities(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (uncalibrated risk, calibrated probability)."""
        logits = self.scorer.logits(features)
        return PlattScaling()(logits), self.calibration(logits)


def fit_calibrated(
    kind: ModelKind, train: Table, fit: FitConfig, moe: MoEConfig | None = None, folds: int = 5
) -> CalibratedModel:
    """Fit on all training patients; fit Platt scaling on out-of-fold training logits."""
    platt = PlattScaling.fit(out_of_fold_logits(kind, train, fit, moe, folds), train.labels)
    return CalibratedModel(kind, fit_scorer(kind, train, fit, moe), platt)
