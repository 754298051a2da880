"""Rooms over the real app: join, live edits in version order, access, audit, persistence."""

from __future__ import annotations

import gzip
import json
import re
import threading
import uuid
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from medverse.service.app import create_app
from medverse.service.audit.store import read_audit
from medverse.service.db import Database
from medverse.service.jobs.store import create_job
from medverse.service.static import WEB_DIST
from medverse.service.tables import Study
from tests.service.conftest import Api, TestClient, ct_files, insert_study


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def join(
    api: Api, sockets: ExitStack, study_id: str, headers: dict[str, str]
) -> tuple[WebSocketTestSession, dict[str, Any]]:
    """Open a room socket, join, and return it with the welcome message."""
    socket = sockets.enter_context(api.client.websocket_connect(f"/api/rooms/{study_id}/ws"))
    socket.send_text(json.dumps({"type": "join", "token": token_of(headers)}))
    welcome: dict[str, Any] = socket.receive_json()
    assert welcome["type"] == "welcome", welcome
    return socket, welcome


def until(socket: WebSocketTestSession, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (presence and pointer messages in between skipped)."""
    for _ in range(200):
        message: dict[str, Any] = socket.receive_json()
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message")


def comment(text: str, point: tuple[float, float, float] = (1.0, 2.0, 3.0)) -> dict[str, Any]:
    return {
        "op": "annotation.add",
        "annotation": {"id": uuid.uuid4().hex, "kind": "comment", "points": [point], "text": text},
    }


def send_edit(socket: WebSocketTestSession, edit: dict[str, Any], base: int = 0) -> str:
    request_id = uuid.uuid4().hex
    socket.send_text(
        json.dumps({"type": "edit", "request_id": request_id, "base_version": base, "edit": edit})
    )
    return request_id


def identified_study(db: Database) -> str:
    study_id = str(uuid.uuid4())
    with db.writing() as session:
        session.add(
            Study(id=study_id, study_uid=f"2.25.{uuid.uuid4().int}", kind="dicom",
                  identified=True, created_by="test")
        )  # fmt: skip
    return study_id


def test_two_users_see_each_other_and_each_others_comments(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    a, welcome_a = join(api, sockets, study, api.clinician)
    assert welcome_a["document"] == {
        "study_id": study, "version": 0, "presenter": None, "annotations": [], "updated_at": None
    }  # fmt: skip
    assert welcome_a["you"]["name"] == "clinician-1"
    b, welcome_b = join(api, sockets, study, api.researcher)
    assert [p["name"] for p in welcome_b["participants"]] == ["clinician-1", "researcher-1"]
    assert welcome_a["you"]["color"] != welcome_b["you"]["color"]
    presence = until(a, "presence")
    assert {p["name"] for p in presence["participants"]} == {"clinician-1", "researcher-1"}

    request_id = send_edit(a, comment("suspicious lesion, segment 7", (10.5, -20.0, 33.25)))
    seen_by_a, seen_by_b = until(a, "edit"), until(b, "edit")
    assert seen_by_a == seen_by_b
    assert seen_by_b["version"] == 1 and seen_by_b["request_id"] == request_id
    added = seen_by_b["change"]["annotation"]
    assert added["text"] == "suspicious lesion, segment 7"
    assert added["points"] == [[10.5, -20.0, 33.25]]
    assert added["author"] == "clinician-1" and added["color"] == welcome_a["you"]["color"]

    document = api.client.get(f"/api/rooms/{study}", headers=api.researcher).json()
    assert document["version"] == 1 and document["annotations"] == [added]
    b.close()
    left = until(a, "presence")
    assert [p["name"] for p in left["participants"]] == ["clinician-1"]


def test_concurrent_edits_are_all_kept_in_one_order(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    a, _ = join(api, sockets, study, api.clinician)
    b, _ = join(api, sockets, study, api.admin)

    def burst(socket: WebSocketTestSession, who: str) -> None:
        for i in range(15):
            send_edit(socket, comment(f"{who}-{i}"))

    threads = [threading.Thread(target=burst, args=(s, w)) for s, w in ((a, "a"), (b, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stream_a = [until(a, "edit") for _ in range(30)]
    stream_b = [until(b, "edit") for _ in range(30)]
    assert [e["version"] for e in stream_a] == list(range(1, 31))
    assert stream_a == stream_b
    texts = [e["change"]["annotation"]["text"] for e in stream_a]
    assert sorted(texts) == sorted([f"a-{i}" for i in range(15)] + [f"b-{i}" for i in range(15)])
    # each sender's own edits keep the order it sent them in
    assert [t for t in texts if t.startswith("a-")] == [f"a-{i}" for i in range(15)]
    document = api.client.get(f"/api/rooms/{study}", headers=api.admin).json()
    assert document["version"] == 30
    assert [x["text"] for x in document["annotations"]] == texts


def test_measurements_updates_deletes_and_rejections(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    a, _ = join(api, sockets, study, api.clinician)
    distance_id = uuid.uuid4().hex
    points = [[0, 0, 0], [30, 40, 0]]
    draft = {"id": distance_id, "kind": "distance", "points": points, "value": 1.0}
    send_edit(a, {"op": "annotation.add", "annotation": draft})
    added = until(a, "edit")["change"]["annotation"]
    assert added["value"] == 50.0  # the server measures, whatever the client claimed
    send_edit(a, {"op": "annotation.update", "id": distance_id, "points": [[0, 0, 0], [0, 0, 12]]})
    updated = until(a, "edit")
    assert updated["version"] == 2 and updated["change"]["annotation"]["value"] == 12.0

    bad = send_edit(a, {"op": "annotation.add", "annotation": {
        "id": uuid.uuid4().hex, "kind": "distance", "points": [[0, 0, 0]]}})  # fmt: skip
    rejected = until(a, "rejected")
    assert rejected["request_id"] == bad and "needs 2 point(s)" in rejected["detail"]
    send_edit(a, {"op": "annotation.update", "id": distance_id + "x", "text": "?"})
    assert "no annotation" in until(a, "rejected")["detail"]
    send_edit(a, {"op": "annotation.add", "annotation": {
        "id": distance_id, "kind": "comment", "points": [[1, 1, 1]]}})  # fmt: skip
    assert "already exists" in until(a, "rejected")["detail"]
    a.send_text(json.dumps({"type": "pointer", "position": [float("inf"), 0, 0]}))
    assert until(a, "error")["code"] == 400
    a.send_text("not json")
    assert until(a, "error")["code"] == 400

    send_edit(a, {"op": "annotation.delete", "id": distance_id})
    assert until(a, "edit")["version"] == 3
    document = api.client.get(f"/api/rooms/{study}", headers=api.clinician).json()
    assert document["version"] == 3 and document["annotations"] == []


def test_presenter_view_reaches_followers_and_late_joiners(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    a, _ = join(api, sockets, study, api.clinician)
    b, _ = join(api, sockets, study, api.admin)
    view = {"crosshair": [1.0, 2.0, 3.0], "slice_type": 3, "azimuth": 110.0, "elevation": 15.0}
    a.send_text(json.dumps({"type": "view", "view": view}))
    assert until(a, "error")["detail"] == "you are not the presenter"
    send_edit(a, {"op": "presenter.set", "present": True})
    assert until(b, "edit")["change"] == {"op": "presenter.set", "presenter": "clinician-1"}
    a.send_text(json.dumps({"type": "view", "view": view}))
    followed = until(b, "view")
    assert followed["view"]["crosshair"] == [1.0, 2.0, 3.0] and followed["view"]["azimuth"] == 110
    a.send_text(json.dumps({"type": "pointer", "position": [5, 6, 7], "crosshair": [1, 2, 3]}))
    pointer = until(b, "pointer")
    assert pointer["position"] == [5, 6, 7]

    _c, late = join(api, sockets, study, api.researcher)
    assert late["document"]["presenter"] == "clinician-1"
    assert late["view"]["crosshair"] == [1.0, 2.0, 3.0]
    assert list(late["pointers"].values()) == [{"position": [5, 6, 7], "crosshair": [1, 2, 3]}]


@pytest.mark.parametrize(
    ("who", "code"), [("nobody", 4401), ("researcher", 4404), ("missing", 4404)]
)
def test_only_users_who_can_read_the_study_join(api: Api, who: str, code: int) -> None:
    study = identified_study(api.db)
    token = {
        "nobody": "mvt_0123456789abcdef_not-a-real-secret",
        "researcher": token_of(api.researcher),
        "missing": token_of(api.clinician),
    }[who]
    target = str(uuid.uuid4()) if who == "missing" else study
    with api.client.websocket_connect(f"/api/rooms/{target}/ws") as socket:
        socket.send_text(json.dumps({"type": "join", "token": token}))
        error = socket.receive_json()
        assert error["type"] == "error" and error["code"] == code
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    assert closed.value.code == code
    assert api.client.get(f"/api/rooms/{target}", headers=api.researcher).status_code in (403, 404)


def test_a_socket_must_join_first(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    with api.client.websocket_connect(f"/api/rooms/{study}/ws") as socket:
        socket.send_text(json.dumps({"type": "pointer", "position": [0, 0, 0]}))
        assert socket.receive_json()["code"] == 4400


def test_joins_and_refusals_are_audited(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    closed = identified_study(api.db)
    join(api, sockets, study, api.clinician)
    with api.client.websocket_connect(f"/api/rooms/{closed}/ws") as socket:
        socket.send_text(json.dumps({"type": "join", "token": token_of(api.researcher)}))
        socket.receive_json()
    events = {(e.actor, e.action, e.resource, e.outcome) for e in read_audit(api.db)}
    assert ("clinician-1", "room.join", f"study/{study}/room", "ok") in events
    assert ("researcher-1", "room.join", f"study/{closed}/room", "denied") in events


def test_the_document_survives_a_restart(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    a, _ = join(api, sockets, study, api.clinician)
    send_edit(a, comment("kept across restarts", (4.0, 5.0, 6.0)))
    until(a, "edit")
    sockets.close()
    api.client.__exit__(None, None, None)  # stop the app (lifespan ends, engine disposed)

    with TestClient(create_app(api.settings)) as client, ExitStack() as again:
        restarted = replace(api, client=client)
        document = client.get(f"/api/rooms/{study}", headers=api.clinician).json()
        assert document["version"] == 1
        assert document["annotations"][0]["text"] == "kept across restarts"
        b, welcome = join(restarted, again, study, api.clinician)
        assert welcome["document"] == document
        send_edit(b, comment("after the restart"), base=1)
        assert until(b, "edit")["version"] == 2


def test_the_viewer_gets_the_ct_as_nifti_and_a_job_colour_table(api: Api) -> None:
    study = api.client.post("/api/studies", files=ct_files(), headers=api.clinician).json()
    url = f"/api/viewer/studies/{study['id']}/image.nii.gz"
    answer = api.client.get(url, headers=api.clinician)
    assert answer.status_code == 200, answer.text
    image = nib.Nifti1Image.from_bytes(gzip.decompress(answer.content))
    assert image.shape == (512, 512, 20)
    assert np.isclose(abs(np.linalg.det(image.affine[:3, :3])), 0.9765625**2 * 2.0, rtol=1e-3)
    assert api.client.get(url, headers=api.researcher).status_code == 404

    job = create_job(api.db, study_id=study["id"], series_uid=None, model="m", created_by="x")
    table = api.client.get(f"/api/viewer/jobs/{job.id}/labels", headers=api.clinician)
    assert table.status_code == 409 and "queued" in table.json()["detail"]
    events = {(e.action, e.outcome) for e in read_audit(api.db, resource=f"study/{study['id']}")}
    assert ("viewer.image", "ok") in events and ("viewer.image", "denied") in events


def test_the_built_viewer_is_served_at_the_root(api: Api) -> None:
    page = api.client.get("/")
    if not (WEB_DIST / "index.html").is_file():
        assert page.status_code == 503 and "make web" in page.text
        return
    assert page.status_code == 200 and "medverse viewer" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = re.search(r'src="(/assets/[^"]+\.js)"', page.text)
    assert script is not None
    bundle = api.client.get(script.group(1))
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert "https://" not in page.text  # nothing from a CDN
    assert api.client.get("/assets/missing.js").status_code == 404
