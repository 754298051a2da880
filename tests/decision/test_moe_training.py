"""MoE training on the real tables: capacity overflow during training, none at inference."""

from __future__ import annotations

import numpy as np
import torch

from medverse.decision.candidates import build_moe, moe_parameter_count
from medverse.decision.data import Table
from medverse.decision.encoding import Encoder
from medverse.decision.moe import DenseClassifier, MoEConfig, dense_hidden_for, parameter_count
from medverse.decision.training import FitConfig, fit_network, predict_logits


def test_capacity_drops_in_training_never_at_inference(heart: Table) -> None:
    train = heart.select(["cleveland"])
    encoder = Encoder.fit(train.schema, train.features)
    values = encoder.transform(train.features)
    config = MoEConfig(capacity_factor=0.5)  # half the even share: must overflow
    network, history = fit_network(
        lambda: build_moe(encoder, config), values, train.labels, FitConfig(epochs=2)
    )
    assert all(d > 0 for d in history.dropped)
    with torch.no_grad():
        out = network(torch.as_tensor(values))
    assert out.moe is not None and out.moe.dropped == 0
    assert np.isfinite(predict_logits(network, values)).all()


def test_learned_defaults_stand_in_for_missing_values_not_zero(heart: Table) -> None:
    train = heart.select(["cleveland", "hungarian"])
    encoder = Encoder.fit(train.schema, train.features)
    network = build_moe(encoder, MoEConfig()).eval()
    swiss = heart.select(["switzerland"])
    values = torch.as_tensor(encoder.transform(swiss.features))
    chol = encoder.column_names.index("chol")
    assert torch.isnan(values[:, chol]).all()  # detected as missing for every Swiss patient
    tokens = network.inputs(values)
    with torch.no_grad():
        network.inputs.defaults[chol] = 1.5
    moved = network.inputs(values)
    assert torch.all(moved[:, chol] == 1.5) and torch.all(tokens[:, chol] == 0.0)
    assert torch.all(moved[:, len(encoder.column_names) + chol] == 0.0)  # mask: missing
    assert torch.isfinite(network(values).logits).all()


def test_dense_baseline_has_the_moe_parameter_count(heart: Table) -> None:
    encoder = Encoder.fit(heart.schema, heart.features)
    budget = moe_parameter_count(encoder, MoEConfig())
    dense = DenseClassifier(
        len(encoder.column_names), dense_hidden_for(len(encoder.column_names), budget)
    )
    assert abs(parameter_count(dense) - budget) / budget < 0.03
