"""One patient: calibrated probability, gate weights, chosen expert and its features, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medverse.cli.main import main
from medverse.core.errors import InputError, ModelError
from medverse.decision.model_file import DecisionModel, load_decision_model
from medverse.decision.predict import attribute, predict_record

PATIENT = {
    "age": 63, "sex": 1, "cp": 4, "trestbps": 145, "chol": 0, "fbs": None, "restecg": 2,
    "thalach": 120, "exang": 1, "oldpeak": 2.3, "slope": 2,
}  # fmt: skip


def test_decision_has_probability_expert_gate_weights_and_top_features(
    quick_model: DecisionModel,
) -> None:
    decision = predict_record(quick_model, PATIENT)
    assert 0.0 < decision.probability < 1.0 and 0.0 < decision.risk < 1.0
    assert set(decision.gate_weights) == {"history", "exercise_ecg", "imaging", "generalist"}
    assert sum(decision.gate_weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert decision.expert == max(decision.gate_weights, key=decision.gate_weights.__getitem__)
    assert len(decision.experts_used) == 2 and decision.expert in decision.experts_used
    # chol 0 means "not measured"; ca and thal were not given at all
    assert decision.missing == ["chol", "fbs", "ca", "thal"]
    reads = next(v.features for v in quick_model.schema.experts if v.name == decision.expert)
    assert decision.top_features
    for item in decision.top_features:
        assert item.name in reads and item.value is not None


def test_attributions_add_up_to_the_expert_logit_change_from_the_defaults(
    quick_model: DecisionModel,
) -> None:
    import numpy as np

    row = np.asarray([quick_model.schema.record_to_row(PATIENT)])
    values = torch.as_tensor(quick_model.encoder.transform(row))
    expert = quick_model.network.moe.experts[0]
    per_feature = attribute(quick_model, values, 0)
    tokens = quick_model.network.inputs(values)
    defaults = quick_model.network.inputs.defaults.detach().unsqueeze(0)
    baseline = torch.cat([defaults, tokens[:, defaults.shape[1] :]], dim=-1)
    with torch.no_grad():
        change = float(expert(tokens) - expert(baseline))
    assert per_feature.sum() == pytest.approx(change, abs=1e-2)  # IG completeness
    assert per_feature[quick_model.schema.names.index("chol")] == 0.0  # missing: no share


def test_model_file_round_trips_and_bad_files_are_named(
    quick_model_path: Path, tmp_path: Path
) -> None:
    model = load_decision_model(quick_model_path)
    assert model.card["training_sites"] == ["cleveland", "hungarian"]
    assert quick_model_path.with_suffix(".md").read_text().startswith("# Model card")
    curves = quick_model_path.with_name("heart_disease_curves.png")
    assert curves.read_bytes()[:4] == b"\x89PNG"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"junk\.pt"):
        load_decision_model(junk)


def test_out_of_range_input_is_refused_naming_the_field(quick_model: DecisionModel) -> None:
    with pytest.raises(InputError, match="trestbps: 900 mmHg"):
        predict_record(quick_model, {**PATIENT, "trestbps": 900})


def test_cli_prints_the_decision_and_writes_the_report(
    quick_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps(PATIENT))
    report = tmp_path / "report.md"
    args = ["decide", "predict", "--model", str(quick_model_path), "--input", str(patient)]
    assert main([*args, "--report", str(report), "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert "calibrated probability:" in out and "chosen expert:" in out
    assert "Gate weights" in report.read_text()
    assert json.loads((tmp_path / "d.json").read_text())["missing"] == [
        "chol", "fbs", "ca", "thal",
    ]  # fmt: skip
    patient.write_text(json.dumps({**PATIENT, "trestbps": 900}))
    assert main(args) == 2
    assert "trestbps: 900 mmHg is outside the valid range" in capsys.readouterr().err
