"""The models compared: the MoE, a dense MLP of equal size, logistic regression, boosting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
from torch import nn

from medverse.core.errors import ConfigError
from medverse.decision.calibration import IsotonicCalibration, PlattScaling, TemperatureScaling
from medverse.decision.data import Table
from medverse.decision.encoding import Encoder
from medverse.decision.moe import (
    DenseClassifier,
    MoEClassifier,
    MoEConfig,
    dense_hidden_for,
    parameter_count,
)
from medverse.decision.prior_shift import ConfusionRates
from medverse.decision.schema import FeatureKind, TaskSchema
from medverse.decision.training import FitConfig, fit_network, predict_logits


class ModelKind(StrEnum):
    """The candidate models."""

    MOE = "moe"
    DENSE_MLP = "dense_mlp"
    LOGISTIC = "logistic_regression"
    BOOSTING = "gradient_boosting"


BASELINES = (ModelKind.LOGISTIC, ModelKind.BOOSTING, ModelKind.DENSE_MLP)
NETWORKS = (ModelKind.MOE, ModelKind.DENSE_MLP)
AUGMENTED_COPIES = 4  # scikit-learn models: extra copies of the table with features hidden


@dataclass(frozen=True)
class ModelSettings:
    """How one candidate is built and trained; ``tuning.py`` chooses them on training sites.

    Attributes:
        fit: Optimiser, feature dropout and ensemble size (networks); feature dropout also
            applies to the scikit-learn models, as extra training copies with features hidden.
        moe: MoE shape; for the dense MLP it fixes the parameter budget and the dropout.
        params: scikit-learn ``set_params`` pairs for logistic regression / boosting.
    """

    fit: FitConfig = field(default_factory=FitConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    params: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (``from_dict`` reads it back)."""
        return {"fit": vars(self.fit), "moe": vars(self.moe), "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSettings:
        """Rebuild from ``to_dict``'s output; integer parameters stay integers.

        Raises:
            ConfigError: If a field is unknown or a value is invalid.
        """
        try:
            fit, moe = FitConfig(**data["fit"]), MoEConfig(**data["moe"])
        except (KeyError, TypeError) as error:
            raise ConfigError(f"invalid model settings: {error}") from error
        return cls(fit, moe, tuple(data.get("params", {}).items()))


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
    """Torch networks over the shared encoding; their logits are averaged (seed ensemble)."""

    encoder: Encoder
    networks: list[nn.Module]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Return the mean logit of the networks."""
        values = self.encoder.transform(features)
        return np.mean([predict_logits(net, values) for net in self.networks], axis=0)


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


def _boosting(schema: TaskSchema) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Native missing-value support: NaN goes down the learned side of every split.
    cats = [f.kind == FeatureKind.CATEGORICAL for f in schema.features]
    return HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, categorical_features=cats,
    )  # fmt: skip


def fit_scorer(kind: ModelKind, train: Table, settings: ModelSettings | None = None) -> Scorer:
    """Fit one candidate on the training table.

    The dense MLP gets as many parameters as the MoE built with ``settings.moe`` (to within
    one hidden unit's worth). Networks are an ensemble of ``settings.fit.ensemble`` seeds.
    """
    settings = settings or ModelSettings()
    fit = settings.fit
    if kind in (ModelKind.LOGISTIC, ModelKind.BOOSTING):
        model = _logistic(train.schema) if kind == ModelKind.LOGISTIC else _boosting(train.schema)
        model.set_params(**dict(settings.params))
        if kind == ModelKind.BOOSTING:
            model.set_params(random_state=fit.seed)
        features, labels = hide_features(train, fit.feature_dropout, fit.seed)
        return SklearnScorer(model.fit(features, labels))
    encoder = Encoder.fit(train.schema, train.features)
    values, owner = encoder.transform(train.features), encoder.column_feature
    build = _network_builder(kind, encoder, settings.moe)
    networks = [
        fit_network(build, values, train.labels, replace(fit, seed=fit.seed + i), None, owner)[0]
        for i in range(fit.ensemble)
    ]
    return NetworkScorer(encoder, networks)


def _network_builder(kind: ModelKind, encoder: Encoder, moe: MoEConfig) -> Callable[[], nn.Module]:
    if kind == ModelKind.MOE:
        return lambda: build_moe(encoder, moe)
    columns = len(encoder.column_names)
    hidden = dense_hidden_for(columns, moe_parameter_count(encoder, moe))
    return lambda: DenseClassifier(columns, hidden, moe.dropout)


def hide_features(train: Table, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training rows plus ``AUGMENTED_COPIES`` copies with each feature hidden at ``rate``.

    The scikit-learn counterpart of the networks' feature dropout; the table unchanged when
    ``rate`` is 0.
    """
    if rate <= 0:
        return train.features, train.labels
    rng = np.random.default_rng(seed)
    copies = [train.features]
    for _ in range(AUGMENTED_COPIES):
        copy = train.features.copy()
        copy[rng.random(copy.shape) < rate] = np.nan
        copies.append(copy)
    return np.concatenate(copies), np.tile(train.labels, AUGMENTED_COPIES + 1)


def moe_parameter_count(encoder: Encoder, config: MoEConfig) -> int:
    """Trainable parameters of the MoE for this encoder."""
    return parameter_count(build_moe(encoder, config))


@dataclass
class OutOfFold:
    """Out-of-fold predictions on the training patients and the fold models that made them.

    Attributes:
        logits: Per training patient, the logit of the fold model that did not see it.
        scorers: The fold models.
        fold: Per training patient, the index of its fold model.
    """

    logits: np.ndarray
    scorers: list[Scorer]
    fold: np.ndarray


def out_of_fold(
    kind: ModelKind, train: Table, settings: ModelSettings | None, folds: int
) -> OutOfFold:
    """Logits for every training patient from a model that did not see it (stratified folds).

    Folds are stratified by site and label, so each fold looks like the training sites.
    """
    from sklearn.model_selection import StratifiedKFold

    strata = np.char.add(train.sites.astype(str), train.labels.astype(str))
    settings = settings or ModelSettings()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=settings.fit.seed)
    result, fold, scorers = np.zeros(len(train.labels)), np.zeros(len(train.labels), int), []
    for index, (fit_rows, held_rows) in enumerate(splitter.split(train.features, strata)):
        part = Table(
            train.schema, train.features[fit_rows], train.labels[fit_rows], train.sites[fit_rows]
        )
        scorers.append(fit_scorer(kind, part, settings))
        result[held_rows] = scorers[-1].logits(train.features[held_rows])
        fold[held_rows] = index
    return OutOfFold(result, scorers, fold)


def out_of_fold_logits(
    kind: ModelKind, train: Table, settings: ModelSettings | None, folds: int
) -> np.ndarray:
    """The logits of ``out_of_fold`` alone."""
    return out_of_fold(kind, train, settings, folds).logits


@dataclass
class CalibratedModel:
    """A fitted model and its calibrations, all from the training sites only.

    ``calibration`` (Platt) is the default; temperature and isotonic scaling are fitted on the
    same out-of-fold logits for the comparison of methods (``recalibration``). ``train`` and
    ``out_of_fold`` (the fold models) let ``site_adaptation`` re-score the training patients
    with a new site's missing fields hidden.
    """

    kind: ModelKind
    scorer: Scorer
    calibration: PlattScaling
    train_prevalence: float
    rates: ConfusionRates
    temperature: TemperatureScaling = field(default_factory=TemperatureScaling)
    isotonic: IsotonicCalibration = field(
        default_factory=lambda: IsotonicCalibration((0.0,), (0.5,))
    )
    train: Table | None = None
    out_of_fold: OutOfFold | None = None

    def probabilities(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (uncalibrated risk, calibrated probability)."""
        logits = self.scorer.logits(features)
        return PlattScaling()(logits), self.calibration(logits)


def fit_calibrated(
    kind: ModelKind, train: Table, settings: ModelSettings | None = None, folds: int = 5
) -> CalibratedModel:
    """Fit on all training patients; fit the calibrations on out-of-fold training logits."""
    oof = out_of_fold(kind, train, settings, folds)
    platt = PlattScaling.fit(oof.logits, train.labels)
    rates = ConfusionRates.measure(platt(oof.logits), train.labels)
    scorer = fit_scorer(kind, train, settings)
    return CalibratedModel(
        kind, scorer, platt, float(train.labels.mean()), rates,
        TemperatureScaling.fit(oof.logits, train.labels),
        IsotonicCalibration.fit(oof.logits, train.labels), train, oof,
    )  # fmt: skip
