"""Tuning knobs on the real tables: feature dropout, seed ensembles, site validation, scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medverse.core.errors import ConfigError, InputError
from medverse.decision.candidates import ModelKind, ModelSettings, fit_scorer, hide_features
from medverse.decision.data import Table
from medverse.decision.encoding import Encoder
from medverse.decision.evaluation import EvalConfig, evaluate_split
from medverse.decision.moe import MoEConfig
from medverse.decision.training import FeatureHider, FitConfig, predict_logits
from medverse.decision.tuning import network_grid, site_validation, tune


def test_feature_dropout_hides_whole_features_one_hot_codes_together(heart: Table) -> None:
    encoder = Encoder.fit(heart.schema, heart.features)
    cleveland = heart.select(["cleveland"])
    values = torch.as_tensor(encoder.transform(cleveland.features))
    hider = FeatureHider(0.5, encoder.column_feature, torch.Generator().manual_seed(0))
    hidden = torch.isnan(hider(values)) & ~torch.isnan(values)
    cp = [i for i, n in enumerate(encoder.column_names) if n.startswith("cp=")]
    assert (hidden[:, cp].all(dim=1) | ~hidden[:, cp].any(dim=1)).all()  # all codes or none
    assert 0.4 < hidden[:, cp[0]].float().mean() < 0.6
    with pytest.raises(ConfigError, match="column -> feature map"):
        FeatureHider(0.2, None, torch.Generator())
    features, labels = hide_features(cleveland, 0.2, 0)
    assert len(features) == 5 * len(cleveland.labels) and labels.sum() == 5 * cleveland.labels.sum()
    assert np.isnan(features).mean() == pytest.approx(0.8 * 0.2, abs=0.02)


def test_seed_ensemble_averages_differently_initialised_networks(heart: Table) -> None:
    train = heart.select(["hungarian"])
    settings = ModelSettings(
        FitConfig(epochs=2, ensemble=2, feature_dropout=0.2), MoEConfig(dropout=0.3)
    )
    scorer = fit_scorer(ModelKind.MOE, train, settings)
    first, second = (net.moe.gate.weight for net in scorer.networks)
    assert not torch.equal(first, second)
    values = scorer.encoder.transform(train.features[:5])
    mean = (
        predict_logits(scorer.networks[0], values) + predict_logits(scorer.networks[1], values)
    ) / 2
    assert np.allclose(scorer.logits(train.features[:5]), mean)


def test_site_validation_scores_each_held_out_training_site(heart: Table) -> None:
    train = heart.select(["cleveland", "hungarian"])
    grid = [ModelSettings(params=(("logisticregression__C", c),)) for c in (0.01, 1.0)]
    ranked = tune(ModelKind.LOGISTIC, train, grid)
    assert [set(t.auroc_by_site) for t in ranked] == [{"cleveland", "hungarian"}] * 2
    assert ranked[0].mean_auroc >= ranked[1].mean_auroc > 0.8
    moe_grid = network_grid(ModelKind.MOE, MoEConfig(), 3)
    assert len(moe_grid) == 8 * len(network_grid(ModelKind.DENSE_MLP, MoEConfig(), 3))
    assert {s.moe.shared_linear for s in moe_grid} == {False, True}
    with pytest.raises(InputError, match="two or more training sites"):
        site_validation(ModelKind.LOGISTIC, heart.select(["va"]), grid[0])


def test_split_scores_carry_both_prior_shift_corrections(heart: Table) -> None:
    config = EvalConfig(folds=2, bootstrap=20)
    split = evaluate_split(heart, ["cleveland", "hungarian"], ["va"], [ModelKind.LOGISTIC], config)
    scores = split.scores[ModelKind.LOGISTIC]
    assert set(scores.shifted) == {"em", "bbse"}
    for shifted in scores.shifted.values():
        assert 0.0 <= shifted.prevalence <= 1.0 and shifted.probs.shape == split.labels.shape
    assert json.loads(json.dumps(split.to_dict()))["models"]["logistic_regression"]["prior_shift"]


def test_settings_survive_json_with_integer_parameters(heart: Table) -> None:
    settings = ModelSettings(
        FitConfig(feature_dropout=0.2), params=(("learning_rate", 0.1), ("max_leaf_nodes", 7))
    )
    back = ModelSettings.from_dict(json.loads(json.dumps(settings.to_dict())))
    assert back == settings and isinstance(dict(back.params)["max_leaf_nodes"], int)
    fit_scorer(ModelKind.BOOSTING, heart.select(["cleveland"]), back)  # sklearn accepts them
    with pytest.raises(ConfigError, match="invalid model settings"):
        ModelSettings.from_dict({"fit": {"epoch": 3}, "moe": {}})
