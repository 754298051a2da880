"""The room store: edit log + snapshots rebuild every document exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import uuid
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from medverse.service.app import create_app
from medverse.service.db import Database
from medverse.service.rooms.document import RoomDocument, apply_edit, replay_change
from medverse.service.rooms.messages import parse_client
from medverse.service.rooms.store import (
    SNAPSHOT_EVERY,
    EditConflictError,
    RoomEditRecord,
    StoredEdit,
    append_edits,
    load_document,
    save_snapshot,
)
from medverse.service.tables import Study
from tests.service.conftest import Api, TestClient, insert_study
from tests.service.rooms.test_rooms import comment, join, send_edit, until


def edit_of(raw: dict[str, Any]) -> Any:
    """A client edit, validated as the socket would validate it."""
    text = json.dumps({"type": "edit", "request_id": "r", "base_version": 0, "edit": raw})
    return parse_client(text).edit  # type: ignore[union-attr]


def add(kind: str, points: list[list[float]], text: str = "") -> dict[str, Any]:
    annotation = {"id": uuid.uuid4().hex, "kind": kind, "points": points, "text": text}
    return {"op": "annotation.add", "annotation": annotation}


def mixed_edits(count: int) -> list[dict[str, Any]]:
    """Adds, distance measurements, text and point updates, deletes and presenter changes."""
    edits: list[dict[str, Any]] = []
    comments: list[str] = []
    for i in range(count):
        if i % 7 == 3 and comments:
            edits.append({"op": "annotation.delete", "id": comments.pop(0)})
        elif i % 5 == 2 and comments:
            points = [[float(i), 1.5, -2.0]]
            edits.append(
                {"op": "annotation.update", "id": comments[-1], "text": f"edited {i}",
                 "points": points}
            )  # fmt: skip
        elif i % 11 == 0:
            edits.append({"op": "presenter.set", "present": i % 22 == 0})
        elif i % 4 == 1:
            edits.append(add("distance", [[0, 0, 0], [3, 4, float(i)]]))
        else:
            edits.append(add("comment", [[1, 2, i]], f"c{i}"))
            comments.append(edits[-1]["annotation"]["id"])
    return edits


def apply_all(
    study_id: str, raw_edits: list[dict[str, Any]]
) -> tuple[RoomDocument, list[StoredEdit]]:
    """Apply the edits as the hub does; the log keeps each change as it went over the wire."""
    document = RoomDocument(study_id=study_id)
    log: list[StoredEdit] = []
    for number, raw in enumerate(raw_edits):
        author = "alice" if number % 3 else "bob"
        document, change = apply_edit(  # as admins: the edits touch each other's annotations
            document, edit_of(raw), author=author, color="#3cb44b", may_edit_others=True
        )
        assert document.updated_at is not None
        wire = json.loads(json.dumps(change))
        log.append(StoredEdit(document.version, wire, document.updated_at))
    return document, log


def test_replaying_the_changes_gives_back_the_same_document() -> None:
    final, log = apply_all("s", mixed_edits(120))
    rebuilt = RoomDocument(study_id="s")
    for stored in log:
        rebuilt = replay_change(rebuilt, stored.change, version=stored.version, at=stored.at)
    assert rebuilt == final
    assert {e.change["op"] for e in log} == {
        "annotation.add", "annotation.update", "annotation.delete", "presenter.set"
    }  # fmt: skip
    distances = [a for a in rebuilt.annotations if a.kind.value == "distance"]
    assert distances
    assert all(a.value == round(math.dist(*a.points), 3) for a in distances)


def test_a_gap_in_the_log_is_refused() -> None:
    _, log = apply_all("s", mixed_edits(3))
    with pytest.raises(ValueError, match="gap"):
        replay_change(RoomDocument(study_id="s"), log[1].change, version=2, at=log[1].at)


def test_log_and_snapshots_rebuild_the_document(db: Database) -> None:
    study = insert_study(db)
    final, log = apply_all(study, mixed_edits(SNAPSHOT_EVERY + 57))
    middle, _ = apply_all(study, mixed_edits(SNAPSHOT_EVERY + 57)[:SNAPSHOT_EVERY])
    for start in range(0, len(log), 13):  # batches, as group commit stores them
        append_edits(db, study, log[start : start + 13])
    assert load_document(db, study).model_dump(mode="json") == final.model_dump(mode="json")
    # a snapshot partway, then the rest replayed from the log, gives the same document
    rebuilt_middle = RoomDocument(study_id=study)
    for stored in log[:SNAPSHOT_EVERY]:
        rebuilt_middle = replay_change(
            rebuilt_middle, stored.change, version=stored.version, at=stored.at
        )
    save_snapshot(db, rebuilt_middle)
    assert middle.version == rebuilt_middle.version == SNAPSHOT_EVERY
    assert load_document(db, study).model_dump(mode="json") == final.model_dump(mode="json")
    save_snapshot(db, RoomDocument(study_id=study, version=3))  # older: ignored
    assert load_document(db, study).model_dump(mode="json") == final.model_dump(mode="json")


def test_a_version_already_stored_is_refused_and_nothing_is_lost(db: Database) -> None:
    study = insert_study(db)
    _, log = apply_all(study, mixed_edits(4))
    append_edits(db, study, log[:3])
    with pytest.raises(EditConflictError, match=study):
        append_edits(db, study, [replace(log[3], version=3)])
    document = load_document(db, study)
    assert document.version == 3
    append_edits(db, study, log[3:])
    assert load_document(db, study).version == 4


def test_the_edit_log_goes_with_its_study(db: Database) -> None:
    study = insert_study(db)
    _, log = apply_all(study, mixed_edits(5))
    append_edits(db, study, log)
    with db.writing() as session:
        session.delete(session.get(Study, study))
    with db.reading() as session:
        left = session.scalar(select(func.count()).where(RoomEditRecord.study_id == study))
    assert left == 0


def test_a_room_past_a_snapshot_survives_a_restart(api: Api, sockets: ExitStack) -> None:
    study = insert_study(api.db)
    a, _ = join(api, sockets, study, api.clinician)
    count = SNAPSHOT_EVERY + 20
    for i in range(count):
        send_edit(a, comment(f"note {i}"))
    versions = [until(a, "edit")["version"] for _ in range(count)]
    assert versions == list(range(1, count + 1))
    before = api.client.get(f"/api/rooms/{study}", headers=api.clinician).json()
    sockets.close()
    api.client.__exit__(None, None, None)

    with TestClient(create_app(api.settings)) as client, ExitStack() as again:
        document = client.get(f"/api/rooms/{study}", headers=api.clinician).json()
        assert document == before
        assert [x["text"] for x in document["annotations"]] == [f"note {i}" for i in range(count)]
        _, welcome = join(replace(api, client=client), again, study, api.clinician)
        assert welcome["document"]["version"] == count
