"""Room documents in the service database: one row per study, rewritten at every edit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from medverse.service.db import Database
from medverse.service.rooms.document import RoomDocument
from medverse.service.tables import Base, utcnow


class RoomRecord(Base):
    """The persisted document of one study's room (deleted with the study)."""

    __tablename__ = "room_documents"

    study_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("studies.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, default=0)
    document: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def load_document(db: Database, study_id: str) -> RoomDocument:
    """The stored document of ``study_id``'s room, or a new empty one (version 0)."""
    with db.reading() as session:
        text = session.scalar(select(RoomRecord.document).where(RoomRecord.study_id == study_id))
    if text is None:
        return RoomDocument(study_id=study_id)
    return RoomDocument.model_validate_json(text)


def save_document(db: Database, document: RoomDocument) -> None:
    """Store ``document`` (one transaction; a stored newer version is never overwritten).

    Raises:
        RuntimeError: If the stored version is already at or past ``document.version`` (two
            processes serving the same room), so the caller does not silently lose an edit.
    """
    text = document.model_dump_json()
    with db.writing(lock=f"room:{document.study_id}") as session:
        record = session.get(RoomRecord, document.study_id)
        if record is None:
            session.add(
                RoomRecord(study_id=document.study_id, version=document.version, document=text)
            )
            return
        if record.version >= document.version:
            raise RuntimeError(
                f"room {document.study_id} is stored at version {record.version}; "
                f"refusing to write version {document.version}"
            )
        record.version = document.version
        record.document = text
