"""ICU routes: FHIR in (422 names the field), ward-scoped beds and alerts, audited acks."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select

from medverse.core.settings import Settings
from medverse.service.app import create_app
from medverse.service.db import Database
from medverse.service.tables import AuditEvent
from tests.service.conftest import Api, TestClient, add_token

LOINC = "http://loinc.org"


def observation(code: str, value: float, unit: str, ident: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": ident, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": "2026-12-03T12:00:00Z",
        "valueQuantity": {"value": value, "code": unit},
    }  # fmt: skip


DETERIORATING = [("8867-4", 140, "/min"), ("9279-1", 28, "/min"), ("8480-6", 88, "mm[Hg]"),
                 ("59408-5", 90, "%"), ("8310-5", 39.5, "Cel")]  # fmt: skip


def audit_actions(api: Api) -> list[tuple[str, str, str, str]]:
    with api.db.reading() as session:
        rows = session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()
        return [(r.actor, r.action, r.resource, r.outcome) for r in rows if "icu" in r.action]


def test_fhir_observation_is_stored_and_scored_and_bad_input_names_the_field(api: Api) -> None:
    url = "/api/icu/wards/ICU1/beds/B1/observations"
    first = api.client.post(url, json=observation("8867-4", 135, "/min", "o1"), headers=api.admin)
    assert first.status_code == 201, first.text
    assert first.json() | {"suppressed": []} == {
        "stored": True, "news2_total": None, "news2_minimum": 3, "completeness": "incomplete",
        "risk": None, "suppressed": [],
    }  # fmt: skip
    again = api.client.post(url, json=observation("8867-4", 135, "/min", "o1"), headers=api.admin)
    assert again.json()["stored"] is False  # a resend is not stored twice
    bad = copy.deepcopy(observation("8867-4", 135, "/min", "o2"))
    bad["valueQuantity"]["value"] = "fast"
    refused = api.client.post(url, json=bad, headers=api.admin)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "valueQuantity", "value"]
    unit = api.client.post(url, json=observation("8867-4", 1, "kPa", "o3"), headers=api.admin)
    assert unit.status_code == 422 and "kPa" in unit.json()["errors"][0]["msg"]
    beds = api.client.get("/api/icu/wards/ICU1/beds", headers=api.admin).json()
    assert [(b["bed"], b["values"]["pulse"]) for b in beds] == [("B1", 135.0)]


def test_clinician_sees_its_wards_only_and_acknowledging_is_audited(api: Api) -> None:
    for index, (code, value, unit) in enumerate(DETERIORATING):
        response = api.client.post(
            "/api/icu/wards/ICU2/beds/B7/observations",
            json=observation(code, value, unit, f"d{index}"), headers=api.admin,
        )  # fmt: skip
        assert response.status_code == 201, response.text
    assert api.client.get("/api/icu/wards/ICU2/beds", headers=api.clinician).status_code == 403
    assert api.client.get("/api/icu/alerts", headers=api.clinician).json() == []
    assert api.client.get("/api/icu/alerts", headers=api.researcher).status_code == 403
    member = api.client.put("/api/icu/wards/ICU2/members/clinician-1", headers=api.admin)
    assert member.json() == {"user": "clinician-1", "wards": ["ICU2"]}
    (alert,) = api.client.get("/api/icu/alerts", headers=api.clinician).json()
    assert alert["bed_id"] == "ICU2/B7" and alert["level"] == "emergency"
    other = add_token(api.db, api.settings, "clinician-2", "clinician")
    denied = api.client.post(f"/api/icu/alerts/{alert['id']}/acknowledge", headers=other)
    assert denied.status_code == 403
    done = api.client.post(f"/api/icu/alerts/{alert['id']}/acknowledge", headers=api.clinician)
    assert done.status_code == 200 and done.json()["acknowledged_by"] == "clinician-1"
    resource = f"icu/alert/{alert['id']}"
    assert ("clinician-2", "icu.alert.acknowledge", resource, "denied") in audit_actions(api)
    assert ("clinician-1", "icu.alert.acknowledge", resource, "ok") in audit_actions(api)


def test_alert_reaches_a_second_users_live_socket_within_a_second(api: Api) -> None:
    import time

    api.client.put("/api/icu/wards/ICU3/members/clinician-1", headers=api.admin)
    other = add_token(api.db, api.settings, "clinician-9", "clinician")
    api.client.put("/api/icu/wards/ICU9/members/clinician-9", headers=api.admin)
    token = api.clinician["Authorization"].split()[1]
    with api.client.websocket_connect("/api/icu/live") as mine, \
            api.client.websocket_connect("/api/icu/live") as theirs:  # fmt: skip
        mine.send_json({"type": "join", "token": token})
        assert mine.receive_json() == {"type": "joined", "wards": ["ICU3"]}
        theirs.send_json({"type": "join", "token": other["Authorization"].split()[1]})
        assert theirs.receive_json()["wards"] == ["ICU9"]
        events: list[dict[str, Any]] = []
        for index, (code, value, unit) in enumerate(DETERIORATING):
            sent = time.monotonic()
            response = api.client.post(
                "/api/icu/wards/ICU3/beds/B2/observations",
                json=observation(code, value, unit, f"l{index}"), headers=api.admin,
            )  # fmt: skip
            if response.json()["news2_minimum"] >= 7:  # this observation crossed NEWS2 7
                while not any(e["type"] == "alert" and e["level"] == "emergency" for e in events):
                    events.append(mine.receive_json())
                assert time.monotonic() - sent < 1.0  # crossing POST sent -> second user's view
                break
        alert = next(e for e in events if e["type"] == "alert" and e["level"] == "emergency")
        assert alert["bed_id"] == "ICU3/B2" and alert["acknowledged_by"] is None
        theirs.send_json({"type": "ping"})
        assert theirs.receive_json() == {"type": "pong"}  # nothing of ICU3 came before it
    with api.client.websocket_connect("/api/icu/live") as refused:
        refused.send_json({"type": "join", "token": "mvt_bogus"})
        assert refused.receive_json()["type"] == "error"


def test_shutting_the_service_down_stops_the_icu_writer(settings: Settings, db: Database) -> None:
    """The writer task lives on the serving loop: shutdown stops it; what it stored stays."""
    admin = add_token(db, settings, "admin-1", "admin")
    url = "/api/icu/wards/ICU3/beds/B2/observations"
    with TestClient(create_app(settings, run_worker=False)) as client:
        stored = client.post(url, json=observation("8867-4", 120, "/min", "s1"), headers=admin)
        assert stored.status_code == 201, stored.text
        runtime = client.app.state.icu_runtime  # type: ignore[attr-defined]
        assert runtime.ingestor.running
    assert not runtime.ingestor.running
    with TestClient(create_app(settings, run_worker=False)) as client:
        beds = client.get("/api/icu/wards/ICU3/beds", headers=admin).json()
    assert [(b["bed"], b["values"]["pulse"]) for b in beds] == [("B2", 120.0)]
