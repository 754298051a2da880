"""Room documents in the service database: an append-only edit log plus periodic snapshots.

Every stored edit is one small row (its version and the change every participant was sent),
so storing an edit costs the same whether the room holds one annotation or two thousand. The
whole document is written as a snapshot now and then (every ``SNAPSHOT_EVERY`` edits and when
the room empties); loading a room is its latest snapshot plus the edits after it, replayed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from medverse.service.db import Database
from medverse.service.rooms.document import RoomDocument, replay_change
from medverse.service.tables import Base, utcnow

# Edits between two snapshots: bounds the replay when a room is opened.
SNAPSHOT_EVERY = 100


class RoomRecord(Base):
    """The latest snapshot of one study's room (deleted with the study)."""

    __tablename__ = "room_documents"

    study_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, default=0)
    document: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RoomEditRecord(Base):
    """One stored edit of a room: the version it made and the change sent to everyone."""

    __tablename__ = "room_edits"

    study_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    change: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column()


@dataclass(frozen=True)
class StoredEdit:
    """An applied edit as the log keeps it.

    Attributes:
        version: The document version the edit produced.
        change: The change as broadcast (``op`` plus the resulting annotation or presenter).
        at: When it was applied.
    """

    version: int
    change: dict[str, Any]
    at: datetime


class EditConflictError(RuntimeError):
    """The log already holds one of the versions being stored (two writers on one room)."""


def load_document(db: Database, study_id: str) -> RoomDocument:
    """The stored document of ``study_id``'s room (snapshot + later edits), or a new one."""
    with db.reading() as session:
        text = session.scalar(select(RoomRecord.document).where(RoomRecord.study_id == study_id))
        document = (
            RoomDocument(study_id=study_id)
            if text is None
            else RoomDocument.model_validate_json(text)
        )
        rows = session.execute(
            select(RoomEditRecord.version, RoomEditRecord.change, RoomEditRecord.at)
            .where(RoomEditRecord.study_id == study_id)
            .where(RoomEditRecord.version > document.version)
            .order_by(RoomEditRecord.version)
        ).all()
    for version, change, at in rows:
        document = replay_change(document, json.loads(change), version=version, at=at)
    return document


def append_edits(db: Database, study_id: str, edits: Sequence[StoredEdit]) -> None:
    """Store consecutive edits of one room in one transaction.

    Raises:
        EditConflictError: If one of the versions is already stored (another process wrote
            to this room), so the caller does not silently lose an edit.
    """
    rows = [
        {"study_id": study_id, "version": e.version, "change": _dump(e.change), "at": e.at}
        for e in edits
    ]
    try:
        with db.writing(lock=f"room:{study_id}") as session:
            session.execute(insert(RoomEditRecord), rows)
    except IntegrityError as error:
        raise EditConflictError(
            f"room {study_id} already holds version {edits[0].version} or a later one"
        ) from error


def save_snapshot(db: Database, document: RoomDocument) -> None:
    """Store ``document`` as the room's snapshot unless a newer snapshot is already stored."""
    text = document.model_dump_json()
    with db.writing(lock=f"room:{document.study_id}") as session:
        record = session.get(RoomRecord, document.study_id)
        if record is None:
            session.add(
                RoomRecord(study_id=document.study_id, version=document.version, document=text)
            )
        elif record.version < document.version:
            record.version = document.version
            record.document = text


def _dump(change: dict[str, Any]) -> str:
    return json.dumps(change, separators=(",", ":"), default=str)
