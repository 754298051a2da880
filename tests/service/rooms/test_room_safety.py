"""Room edits have owners, server-measured values, an audit trail and a rate limit (#12)."""

from __future__ import annotations

import json
import threading
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from medverse.inference.report import measure, write_report
from medverse.service.audit.store import read_audit
from medverse.service.jobs.store import create_job
from medverse.service.rooms.hub import EDITS_PER_MINUTE
from medverse.service.tables import Job, JobState
from tests.service.conftest import Api, add_token, insert_study
from tests.service.rooms.test_rooms import comment, join, send_edit, token_of, until


def _events(api: Api, action: str) -> list[tuple[str, str, str]]:
    """Oldest first."""
    events = reversed(read_audit(api.db))
    return [(e.actor, e.outcome, e.detail) for e in events if e.action == action]


def _settled(socket: WebSocketTestSession) -> None:
    """Wait until the server has finished this socket's previous messages (audit included)."""
    socket.send_text(json.dumps({"type": "ping", "t": 1.0}))
    until(socket, "pong")


def test_only_the_author_or_an_admin_changes_an_annotation_and_refusals_are_audited(
    api: Api, sockets: ExitStack
) -> None:
    study = insert_study(api.db)
    author, _ = join(api, sockets, study, api.clinician)
    other_headers = add_token(api.db, api.settings, "clinician-2", "clinician")
    other, _ = join(api, sockets, study, other_headers)
    admin, _ = join(api, sockets, study, api.admin)
    send_edit(author, comment("No abnormality seen."))
    note = until(author, "edit")["change"]["annotation"]
    assert note["author"] == "clinician-1"

    send_edit(other, {"op": "annotation.update", "id": note["id"], "text": "Discharge."}, 1)
    refused = until(other, "rejected")["detail"]
    send_edit(other, {"op": "annotation.delete", "id": note["id"]}, 1)
    until(other, "rejected")
    send_edit(admin, {"op": "annotation.update", "id": note["id"], "text": "Reviewed."}, 1)
    until(admin, "edit")
    for socket in (author, other, admin):
        _settled(socket)

    assert "belongs to clinician-1: only its author or an admin" in refused
    document = api.client.get(f"/api/rooms/{study}", headers=api.clinician).json()
    assert [a["text"] for a in document["annotations"]] == ["Reviewed."]
    edits = _events(api, "room.edit")
    assert sorted((actor, outcome) for actor, outcome, _ in edits) == [
        ("admin-1", "ok"),
        ("clinician-1", "ok"),
        ("clinician-2", "denied"),
        ("clinician-2", "denied"),
    ]
    assert ("clinician-1", "ok", f"annotation.add {note['id']}") in edits


def test_a_volume_annotation_shows_the_server_measurement_not_the_clients(
    api: Api, sockets: ExitStack
) -> None:
    from tests.inference.helpers import read_ct

    study = insert_study(api.db)
    a, _ = join(api, sockets, study, api.clinician)
    draft = {"id": uuid.uuid4().hex, "kind": "volume", "points": [[0, 0, 0]], "label": 1}
    send_edit(a, {"op": "annotation.add", "annotation": {**draft, "value": 999.0}})
    assert "no finished segmentation" in until(a, "rejected")["detail"]

    ct, labels = read_ct()
    job = create_job(api.db, study_id=study, series_uid=None, model="m", created_by="x")
    report = measure(labels, source=ct)
    write_report(report, api.client.app.state.storage.results_dir(job.id) / "report.json")
    with api.db.writing() as session:
        row = session.get(Job, job.id)
        assert row is not None
        row.state, row.finished_at = JobState.SUCCEEDED.value, datetime.now(UTC)
    send_edit(a, {"op": "annotation.add", "annotation": {**draft, "value": 999.0}})

    value = until(a, "edit")["change"]["annotation"]["value"]
    expected = next(s.volume_ml for s in report.structures if s.value == 1)
    assert value == pytest.approx(expected, abs=1e-3) and value != 999.0


def test_a_flood_of_annotations_is_refused_past_the_rate_limit_with_a_clear_message(
    api: Api, sockets: ExitStack
) -> None:
    study = insert_study(api.db)
    a, _ = join(api, sockets, study, api.researcher)
    for i in range(2000):
        send_edit(a, comment(f"flood {i}"))
    answers = [until(a, "edit") if i < EDITS_PER_MINUTE else until(a, "rejected")
               for i in range(2000)]  # fmt: skip

    _settled(a)
    document = api.client.get(f"/api/rooms/{study}", headers=api.researcher).json()
    assert len(document["annotations"]) == EDITS_PER_MINUTE
    assert f"at most {EDITS_PER_MINUTE} per minute per user" in answers[-1]["detail"]
    limited = [e for e in _events(api, "room.edit") if e[1] == "rejected"]
    assert len(limited) == 1  # the first refusal of the burst, not 1,880 rows


def test_a_presenter_who_leaves_stops_being_presenter(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    watcher, _ = join(api, sockets, study, api.admin)
    with ExitStack() as presenter_socket:
        presenter, _ = join(api, presenter_socket, study, api.clinician)
        send_edit(presenter, {"op": "presenter.set", "present": True})
        assert until(watcher, "edit")["change"]["presenter"] == "clinician-1"

    assert until(watcher, "edit")["change"] == {"op": "presenter.set", "presenter": None}
    assert api.client.get(f"/api/rooms/{study}", headers=api.admin).json()["presenter"] is None


def test_a_removed_users_socket_is_closed_within_a_second(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    headers = add_token(api.db, api.settings, "leaving-1", "clinician")
    socket, _ = join(api, sockets, study, headers)
    closed = threading.Event()

    def watch() -> None:
        try:
            while True:
                socket.receive_json()
        except WebSocketDisconnect:
            closed.set()

    threading.Thread(target=watch, daemon=True).start()
    removed = api.client.delete("/api/users/leaving-1", headers=api.admin)

    assert removed.status_code == 200
    assert closed.wait(1.0)
    assert api.client.get("/api/users/me", headers=headers).status_code == 401
    with api.client.websocket_connect(f"/api/rooms/{study}/ws") as again:
        again.send_text(json.dumps({"type": "join", "token": token_of(headers)}))
        assert again.receive_json()["code"] == 4401


def test_sign_in_failures_and_user_and_token_changes_are_in_the_audit_log(api: Api) -> None:
    study = insert_study(api.db)
    assert api.client.get("/api/jobs").status_code == 401
    bad = {"Authorization": "Bearer mvt_0123456789abcdef_not-a-real-secret"}
    assert api.client.get("/api/studies", headers=bad).status_code == 401
    with api.client.websocket_connect(f"/api/rooms/{study}/ws") as socket:
        socket.send_text(json.dumps({"type": "join", "token": "mvt_nope"}))
        assert socket.receive_json()["code"] == 4401
    api.client.post("/api/users", json={"name": "new-1", "role": "clinician"}, headers=api.admin)
    token = api.client.post("/api/users/new-1/tokens", headers=api.admin).json()["token"]
    api.client.delete("/api/users/new-1", headers=api.admin)

    events = api.client.get("/api/audit", headers=api.admin).json()
    seen = {(e["actor"], e["action"], e["resource"], e["outcome"]) for e in events}
    assert {
        ("-", "auth.sign_in", "http:GET /api/jobs", "denied"),
        ("-", "auth.sign_in", "http:GET /api/studies", "denied"),
        ("-", "auth.sign_in", f"room/{study}", "denied"),
        ("admin-1", "user.create", "user/new-1", "ok"),
        ("admin-1", "token.issue", "user/new-1", "ok"),
        ("admin-1", "user.remove", "user/new-1", "ok"),
    } <= seen
    assert token not in json.dumps(events)
