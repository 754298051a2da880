"""The audit trail: who did what to which study or result, when, from where, and how it ended."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select

from medverse.core.errors import MedverseError
from medverse.service.auth.security import Principal
from medverse.service.db import Database
from medverse.service.errors import ForbiddenError, HiddenError, NotFoundError, ServiceError
from medverse.service.tables import AuditEvent


@dataclass
class Entry:
    """The event an audited action will write; the action may refine it as it learns more.

    Attributes:
        action: What is attempted, e.g. ``study.read``.
        resource: What it is attempted on (ids only).
        detail: A short note (no patient data).
        record_ok: False to write the event only when the action is refused or fails.
    """

    action: str
    resource: str
    detail: str = ""
    record_ok: bool = True


class Outcome(StrEnum):
    """How an audited action ended."""

    OK = "ok"
    DENIED = "denied"
    NOT_FOUND = "not_found"
    REJECTED = "rejected"
    ERROR = "error"


# Who a failed sign-in is recorded as: no user name matches it (names start alphanumeric).
NO_USER = "-"


def record_failed_sign_in(db: Database, client: str, channel: str, detail: str) -> None:
    """Audit a refused token (REST 401 or room socket 4401); the token itself is never stored.

    Args:
        db: The service database.
        client: The caller's address.
        channel: Where it was refused, e.g. ``http:/api/jobs`` or ``room/<study id>``.
        detail: Why (missing, invalid or revoked token).
    """
    event = AuditEvent(
        actor=NO_USER,
        role="none",
        action="auth.sign_in",
        resource=channel[:256],
        client=client[:64],
        outcome=Outcome.DENIED.value,
        detail=detail[:512],
    )
    with db.writing() as session:
        session.add(event)


@dataclass(frozen=True)
class AuditLog:
    """Appends audit events for one caller; each event is committed on its own.

    Attributes:
        db: The service database.
        principal: Who is calling.
        client: The caller's network address.
    """

    db: Database
    principal: Principal
    client: str

    def record(self, action: str, resource: str, outcome: Outcome, detail: str = "") -> None:
        """Append one event (its own transaction, so a refused request is recorded too).

        Args:
            action: What was attempted, e.g. ``study.read``.
            resource: What it was attempted on, e.g. ``study/<id>`` (ids only, no patient data).
            outcome: How it ended.
            detail: A short, patient-data-free note.
        """
        event = AuditEvent(
            actor=self.principal.name,
            role=self.principal.role.value,
            action=action,
            resource=resource[:256],
            client=self.client[:64],
            outcome=outcome.value,
            detail=detail[:512],
        )
        with self.db.writing() as session:
            session.add(event)

    @contextmanager
    def action(self, action: str, resource: str, *, record_ok: bool = True) -> Iterator[Entry]:
        """Audit the enclosed block: ``ok`` if it ends normally, else how it was refused.

        A 403 is recorded as ``denied``, a 404 as ``not_found``, any other refusal of the
        request as ``rejected`` (with its HTTP status), a bug as ``error``; the exception is
        re-raised.
        """
        entry = Entry(action, resource, record_ok=record_ok)
        try:
            yield entry
        except Exception as error:
            self.refused(entry.action, entry.resource, error, entry.detail)
            raise
        if entry.record_ok:
            self.record(entry.action, entry.resource, Outcome.OK, entry.detail)

    def refused(self, action: str, resource: str, error: Exception, detail: str = "") -> None:
        """Record an action that ended with ``error`` (see :meth:`action` for the outcomes)."""
        if isinstance(error, ForbiddenError | HiddenError):
            self.record(action, resource, Outcome.DENIED, detail)
        elif isinstance(error, NotFoundError):
            self.record(action, resource, Outcome.NOT_FOUND, detail)
        elif isinstance(error, MedverseError):
            status = error.status_code if isinstance(error, ServiceError) else 400
            self.record(action, resource, Outcome.REJECTED, f"HTTP {status}")
        else:
            self.record(action, resource, Outcome.ERROR, "internal error")


def read_audit(
    db: Database,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    resource: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditEvent]:
    """Return audit events, newest first.

    Args:
        db: The service database.
        since: Only events at or after this time.
        actor: Only this user's events.
        resource: Only events on resources starting with this text (e.g. ``study/<id>``).
        limit: At most this many.
        before_id: Only events older than this id (for paging).
    """
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if resource is not None:
        query = query.where(AuditEvent.resource.startswith(resource, autoescape=True))
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    with db.reading() as session:
        return list(session.scalars(query))
