"""``/api/decision``: cards, an explained prediction, 422 naming the field, every call audited."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from medverse.service.audit.store import read_audit
from medverse.service.db import open_database
from tests.decision.test_predict_explain import PATIENT
from tests.service.conftest import Api, make_settings, open_api


@pytest.fixture
def api(tmp_path: Path, quick_model_path: Path) -> Iterator[Api]:
    """The service (SQLite) with the quick heart-disease model installed."""
    settings = make_settings(tmp_path, None)
    (settings.models_dir / "decision").mkdir(parents=True)
    shutil.copy(quick_model_path, settings.models_dir / "decision" / "heart_disease.pt")
    db = open_database(settings)
    yield from open_api(settings, db, run_worker=False)
    db.dispose()


def test_prediction_returns_probability_expert_gate_weights_and_top_features(api: Api) -> None:
    answer = api.client.post(
        "/api/decision/heart_disease/predict", json={"features": PATIENT}, headers=api.clinician
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert 0 < body["probability"] < 1 and 0 < body["risk"] < 1
    assert body["expert"] in body["gate_weights"] and len(body["gate_weights"]) == 4
    assert body["top_features"] and {"name", "value", "unit", "attribution"} <= set(
        body["top_features"][0]
    )
    assert body["missing"] == ["chol", "fbs", "ca", "thal"]
    events = read_audit(api.db, actor="clinician-1")
    assert events[0].action == "decision.predict" and events[0].outcome == "ok"


def test_out_of_range_value_is_422_naming_the_field_and_audited(api: Api) -> None:
    answer = api.client.post(
        "/api/decision/heart_disease/predict",
        json={"features": {**PATIENT, "trestbps": 900}},
        headers=api.clinician,
    )
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["loc"] == ["body", "features", "trestbps"]
    assert error["msg"] == "900 mmHg is outside the valid range 50-260 mmHg"
    unknown = api.client.post(
        "/api/decision/heart_disease/predict", json={"features": {"bmi": 30}}, headers=api.admin
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"][-1] == "bmi"
    assert read_audit(api.db, actor="clinician-1")[0].outcome == "rejected"


def test_cards_unknown_models_and_tokens(api: Api) -> None:
    cards = api.client.get("/api/decision/models", headers=api.researcher).json()
    assert [c["name"] for c in cards] == ["heart_disease"]
    trestbps = next(f for f in cards[0]["features"] if f["name"] == "trestbps")
    assert (trestbps["unit"], trestbps["low"], trestbps["high"]) == ("mmHg", 50, 260)
    assert cards[0]["training_sites"] == ["cleveland", "hungarian"]
    missing = api.client.post(
        "/api/decision/nosuch/predict", json={"features": {}}, headers=api.admin
    )
    assert missing.status_code == 404
    anonymous = api.client.post("/api/decision/heart_disease/predict", json={"features": {}})
    assert anonymous.status_code == 401
