"""Choose each model's settings by leave-one-site-out validation inside the training sites.

Every candidate (the MoE and each baseline) gets a grid of the same shared knobs (feature
dropout, plus for the networks hidden dropout, weight decay and epochs; plus each model's own
knobs) and the same ensemble size; the settings with the best mean held-out-site AUROC win.
Only the training sites are read: the test sites play no part in the choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from medverse.core.errors import InputError
from medverse.decision.calibration import expected_calibration_error
from medverse.decision.candidates import ModelKind, ModelSettings, fit_calibrated, fit_scorer
from medverse.decision.data import Table
from medverse.decision.evaluation import auroc, shift_scores
from medverse.decision.moe import GateInputs, MoEConfig
from medverse.decision.training import FitConfig

FEATURE_DROPOUT = (0.0, 0.2)
HIDDEN_DROPOUT = (0.0, 0.3)
WEIGHT_DECAY = (0.01, 0.1)
EPOCHS = (30, 60)
TOP_K = (1, 2)  # MoE only, with the two below
SHARED_LINEAR = (False, True)  # a shared logistic expert beside the routed MLP experts
GATE_INPUTS = (GateInputs.ALL, GateInputs.MASK)  # gate on everything, or on what was recorded
LOGISTIC_C = (0.01, 0.1, 1.0, 10.0)
BOOSTING = tuple(itertools.product((0.03, 0.1), (7, 15)))  # learning rate, leaves
TUNING_ENSEMBLE = 3


@dataclass(frozen=True)
class Trial:
    """One setting's held-out-site AUROCs.

    Attributes:
        settings: What was fitted.
        auroc_by_site: Held-out training site -> AUROC of the model fitted on the others.
    """

    settings: ModelSettings
    auroc_by_site: dict[str, float]

    @property
    def mean_auroc(self) -> float:
        """Mean over the held-out sites."""
        return float(np.mean(list(self.auroc_by_site.values())))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly."""
        return {
            "fit": vars(self.settings.fit),
            "moe": vars(self.settings.moe),
            "params": dict(self.settings.params),
            "auroc_by_site": {k: round(v, 4) for k, v in self.auroc_by_site.items()},
            "mean_auroc": round(self.mean_auroc, 4),
        }


def network_grid(kind: ModelKind, moe: MoEConfig, ensemble: int) -> list[ModelSettings]:
    """The networks' grid of shared knobs; the MoE also varies its own routing knobs.

    Those are ``top_k``, a shared linear expert and the gate's inputs. The dense MLP keeps
    ``moe``'s parameter budget (only its dropout varies with the grid).
    """
    own = (
        itertools.product(TOP_K, SHARED_LINEAR, GATE_INPUTS)
        if kind == ModelKind.MOE
        else [(moe.top_k, moe.shared_linear, moe.gate_inputs)]
    )
    grid = []
    for (rate, drop, decay, epochs), (k, linear, gate) in itertools.product(
        itertools.product(FEATURE_DROPOUT, HIDDEN_DROPOUT, WEIGHT_DECAY, EPOCHS), list(own)
    ):
        fit = FitConfig(epochs=epochs, weight_decay=decay, feature_dropout=rate, ensemble=ensemble)
        shape = replace(moe, dropout=drop, top_k=k, shared_linear=linear, gate_inputs=gate)
        grid.append(ModelSettings(fit, shape))
    return grid


def sklearn_grid(kind: ModelKind) -> list[ModelSettings]:
    """Logistic regression: C x feature dropout; boosting: learning rate x leaves x dropout."""
    if kind == ModelKind.LOGISTIC:
        params: list[tuple[tuple[str, float], ...]] = [
            (("logisticregression__C", c),) for c in LOGISTIC_C
        ]
    else:
        params = [(("learning_rate", lr), ("max_leaf_nodes", n)) for lr, n in BOOSTING]
    return [
        ModelSettings(FitConfig(feature_dropout=rate), params=p)
        for rate, p in itertools.product(FEATURE_DROPOUT, params)
    ]


def site_validation(kind: ModelKind, train: Table, settings: ModelSettings) -> Trial:
    """Hold out each training site in turn, fit on the others, return the AUROCs.

    Raises:
        InputError: If the table has fewer than two sites.
    """
    sites = sorted(set(train.sites.tolist()))
    if len(sites) < 2:
        raise InputError(f"site validation needs two or more training sites, got {sites}")
    scores = {}
    for held in sites:
        fitted = fit_scorer(kind, train.select([s for s in sites if s != held]), settings)
        test = train.select([held])
        scores[held] = auroc(test.labels, fitted.logits(test.features))
    return Trial(settings, scores)


def tune(
    kind: ModelKind,
    train: Table,
    grid: Sequence[ModelSettings],
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Validate every setting of ``grid``; return the trials, best first (ties: grid order)."""
    trials = []
    for settings in grid:
        trials.append(site_validation(kind, train, settings))
        if on_trial is not None:
            on_trial(trials[-1])
    order = sorted(range(len(trials)), key=lambda i: (-trials[i].mean_auroc, i))
    return [trials[i] for i in order]


def tune_all(
    train: Table,
    ensemble: int = TUNING_ENSEMBLE,
    on_trial: Callable[[ModelKind, Trial], None] | None = None,
) -> dict[ModelKind, list[Trial]]:
    """Tune every candidate; each list of trials best first.

    The MoE goes first, so the dense MLP can be tuned at the chosen MoE's parameter budget.
    """

    def report(kind: ModelKind) -> Callable[[Trial], None] | None:
        return None if on_trial is None else lambda trial: on_trial(kind, trial)

    result = {
        ModelKind.MOE: tune(
            ModelKind.MOE,
            train,
            network_grid(ModelKind.MOE, MoEConfig(), ensemble),
            report(ModelKind.MOE),
        )
    }
    chosen = result[ModelKind.MOE][0].settings.moe
    dense_grid = network_grid(ModelKind.DENSE_MLP, chosen, ensemble)
    result[ModelKind.DENSE_MLP] = tune(
        ModelKind.DENSE_MLP, train, dense_grid, report(ModelKind.DENSE_MLP)
    )
    for kind in (ModelKind.LOGISTIC, ModelKind.BOOSTING):
        result[kind] = tune(kind, train, sklearn_grid(kind), report(kind))
    return result


def chosen_settings(
    trials: dict[ModelKind, list[Trial]], ensemble: int
) -> dict[ModelKind, ModelSettings]:
    """The best setting of each model, with the networks' ensemble set to ``ensemble``."""
    chosen = {}
    for kind, ranked in trials.items():
        best = ranked[0].settings
        if kind in (ModelKind.MOE, ModelKind.DENSE_MLP):
            best = replace(best, fit=replace(best.fit, ensemble=ensemble))
        chosen[kind] = best
    return chosen


def prior_shift_validation(
    train: Table, settings: dict[ModelKind, ModelSettings], folds: int = 5
) -> dict[str, Any]:
    """Check the prior-shift corrections inside the training sites and pick one.

    Each training site is held out in turn; every model (with its chosen settings) is fitted
    and calibrated on the others, and the held-out site's calibration is measured without a
    correction and after the EM and BBSE corrections. The method with the lowest mean ECE
    over models and held-out sites is returned as ``chosen`` (``none`` if no correction helps).
    """
    sites = sorted(set(train.sites.tolist()))
    rows = []
    for held in sites:
        test = train.select([held])
        for kind, chosen in settings.items():
            model = fit_calibrated(
                kind, train.select([s for s in sites if s != held]), chosen, folds
            )
            calibrated = model.probabilities(test.features)[1]
            shifted = shift_scores(model, calibrated, test.labels)
            rows.append(
                {
                    "held_out": held,
                    "model": str(kind),
                    "prevalence": round(float(test.labels.mean()), 4),
                    "ece": {"none": expected_calibration_error(calibrated, test.labels)}
                    | {m: r.ece for m, r in shifted.items()},
                    "estimated_prevalence": {m: r.prevalence for m, r in shifted.items()},
                }
            )
    methods = list(rows[0]["ece"])
    mean_ece = {m: float(np.mean([r["ece"][m] for r in rows])) for m in methods}
    return {"rows": rows, "mean_ece": mean_ece, "chosen": min(methods, key=mean_ece.__getitem__)}
