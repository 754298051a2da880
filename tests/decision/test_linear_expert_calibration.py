"""Shared linear expert, mask-only gate, calibration methods and the rule that picks one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.cli.main import main
from medverse.core.errors import ConfigError, InputError
from medverse.decision.api import settings_from_results
from medverse.decision.calibration import (
    IsotonicCalibration,
    TemperatureScaling,
    expected_calibration_error,
)
from medverse.decision.calibration_rule import choose_calibration
from medverse.decision.candidates import ModelKind, ModelSettings, build_moe
from medverse.decision.data import Table
from medverse.decision.encoding import Encoder
from medverse.decision.evaluation import EvalConfig, leave_one_site_out
from medverse.decision.model_file import load_decision_model
from medverse.decision.moe import MoEConfig
from medverse.decision.predict import predict_record
from medverse.decision.recalibration import CalibrationMethod
from medverse.decision.training import FitConfig
from tests.conftest import SHARED_DATA

PATIENT = {"age": 63, "sex": 1, "cp": 4, "trestbps": 145, "chol": 0, "thalach": 120}


def test_mask_gate_routes_by_what_was_recorded_not_by_the_values(heart: Table) -> None:
    encoder = Encoder.fit(heart.schema, heart.features)
    config = MoEConfig(shared_linear=True, gate_inputs="mask")
    network = build_moe(encoder, config).eval()
    values = torch.as_tensor(encoder.transform(heart.features[:50]))
    other = values * 1.7 + 0.3  # same missing fields, other values
    with torch.no_grad():
        first, second = network(values), network(other)
    assert first.moe is not None and second.moe is not None
    assert torch.equal(first.moe.routings[0].probs, second.moe.routings[0].probs)
    assert not torch.allclose(first.logits, second.logits)  # the experts do read values
    with pytest.raises(ConfigError, match="gate_inputs"):
        MoEConfig(gate_inputs="labels")


def test_temperature_and_isotonic_fix_an_overconfident_model() -> None:
    rng = np.random.default_rng(4)
    true_logit = rng.normal(0, 1.5, 20000)
    labels = (rng.uniform(size=true_logit.size) < 1 / (1 + np.exp(-true_logit))).astype(int)
    overconfident = 3.0 * true_logit
    temperature = TemperatureScaling.fit(overconfident, labels)
    assert temperature.temperature == pytest.approx(3.0, rel=0.1)
    isotonic = IsotonicCalibration.fit(overconfident, labels)
    raw = 1 / (1 + np.exp(-overconfident))
    assert expected_calibration_error(raw, labels) > 0.08
    for calibrate in (temperature, isotonic):
        probs = calibrate(overconfident)
        assert expected_calibration_error(probs, labels) < 0.02
        assert probs.min() >= 0.0 and probs.max() <= 1.0


def test_rule_picks_the_method_with_the_lowest_held_out_ece(heart: Table) -> None:
    config = EvalConfig(folds=2, bootstrap=10)
    loso = leave_one_site_out(heart, [ModelKind.LOGISTIC], config)
    result = choose_calibration(loso)
    assert set(result["mean_ece_by_held_out_site"]) == set(heart.schema.sites)
    assert set(result["mean_ece"]) == {str(m) for m in CalibrationMethod if "/" not in m}
    assert result["mean_ece"][result["chosen"]] == min(result["mean_ece"].values())
    swiss = next(s for s in loso if s.test_sites == ("switzerland",))
    methods = swiss.scores[ModelKind.LOGISTIC].methods
    # Switzerland's prevalence (0.94) is far from its training sites': the prior-shift
    # corrections, from its unlabelled features alone, move the mean probability towards it
    assert methods["platt+bbse"].prevalence > methods["platt"].prevalence
    json.dumps(result)
    with pytest.raises(InputError, match="leave-one-site-out"):
        choose_calibration([])


def test_decide_train_takes_the_benchmark_settings_and_explains_the_linear_expert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moe = MoEConfig(shared_linear=True, gate_inputs="mask", top_k=1)
    settings = ModelSettings(FitConfig(epochs=4, ensemble=5), moe)
    results = tmp_path / "bench.json"
    results.write_text(json.dumps({"chosen_settings": {"moe": settings.to_dict()}}))
    fit, read = settings_from_results(results)
    assert read == moe and fit.ensemble == 1 and fit.epochs == 4
    out = tmp_path / "hd.pt"
    args = ["decide", "train", "--task", "heart_disease", "--data", str(SHARED_DATA)]
    assert main([*args, "--out", str(out), "--settings", str(results), "--sites", "hungarian"]) == 0
    model = load_decision_model(out)
    assert model.network.config == moe and model.network.shared is not None
    assert "shared linear expert" in out.with_suffix(".md").read_text()
    decision = predict_record(model, PATIENT)
    assert len(decision.experts_used) == 1 and decision.top_features
    reads = set(next(v.features for v in model.schema.experts if v.name == decision.expert))
    # the shared linear expert reads every feature, so the list may go beyond the expert's own
    assert {f.name for f in decision.top_features} <= set(model.schema.names)
    assert reads and "chol" not in {f.name for f in decision.top_features}  # missing: no share
    results.write_text("{}")
    capsys.readouterr()
    assert main([*args, "--out", str(out), "--settings", str(results)]) == 2
    assert "no chosen MoE settings" in capsys.readouterr().err
