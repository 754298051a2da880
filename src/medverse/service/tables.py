"""SQLAlchemy tables of the service: users and tokens, studies, series, instances, jobs, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DDL,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

UID = String(64)
NAME = String(64)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC (portable to SQLite) and returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store aware datetimes as naive UTC."""
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return stored values as aware UTC."""
        return None if value is None else value.replace(tzinfo=UTC)


class Role(StrEnum):
    """What a user may do: admin everything; clinician identified data; researcher de-identified."""

    ADMIN = "admin"
    CLINICIAN = "clinician"
    RESEARCHER = "researcher"


class JobState(StrEnum):
    """The life of a job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StudyKind(StrEnum):
    """What a study was uploaded as."""

    DICOM = "dicom"
    NIFTI = "nifti"


class Base(DeclarativeBase):
    """Declarative base: every ``datetime`` column is a UTC timestamp."""

    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime}  # noqa: RUF012


class User(Base):
    """A person or system that calls the API."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(NAME, unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiToken(Base):
    """One bearer token: only its salted, peppered hash is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    salt: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[User] = relationship(back_populates="tokens")


class Study(Base):
    """A stored study; a de-identified copy is a study of its own pointing at its source."""

    __tablename__ = "studies"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    identified: Mapped[bool]
    source_study_id: Mapped[str | None] = mapped_column(
        ForeignKey("studies.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(NAME)
    # From the DICOM header ("" for NIfTI, and for studies stored before these columns). The
    # patient's name and ID are kept for identified studies only, shown to admins and clinicians.
    patient_name: Mapped[str] = mapped_column(String(256), default="", server_default="")
    patient_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    study_date: Mapped[str] = mapped_column(String(8), default="", server_default="")
    description: Mapped[str] = mapped_column(String(256), default="", server_default="")
    series: Mapped[list[Series]] = relationship(
        back_populates="study",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Series.id",
    )


class Series(Base):
    """One series of a study (a NIfTI upload is one series)."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("study_id", "series_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    series_uid: Mapped[str] = mapped_column(UID)
    modality: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(256), default="")
    rows: Mapped[int] = mapped_column(default=0)
    columns: Mapped[int] = mapped_column(default=0)
    is_image: Mapped[bool] = mapped_column(default=True)
    path: Mapped[str] = mapped_column(String(512))
    study: Mapped[Study] = relationship(back_populates="series")


class Instance(Base):
    """One stored DICOM object, unique per study by SOP Instance UID."""

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("study_id", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(String(512))


class Job(Base):
    """A segmentation job and its lease; claimed by one worker at a time."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_created", "state", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str | None] = mapped_column(UID)
    model: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(NAME)


class AuditEvent(Base):
    """One access to a study, a result or the audit log; rows are never updated or deleted."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(NAME)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(256))
    client: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(512), default="")


_SQLITE_APPEND_ONLY = [
    DDL(
        f"CREATE TRIGGER IF NOT EXISTS audit_events_no_{verb} BEFORE {verb.upper()} "
        "ON audit_events BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    ).execute_if(dialect="sqlite")
    for verb in ("update", "delete")
]
_POSTGRES_APPEND_ONLY = [
    DDL(
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$ "
        "BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql"
    ).execute_if(dialect="postgresql"),
    DDL(
        "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
        "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
    ).execute_if(dialect="postgresql"),
    DDL(
        "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
    ).execute_if(dialect="postgresql"),
]
for _ddl in (*_SQLITE_APPEND_ONLY, *_POSTGRES_APPEND_ONLY):
    event.listen(AuditEvent.__table__, "after_create", _ddl)
