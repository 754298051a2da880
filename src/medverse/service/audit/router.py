"""``/api/audit``: the audit trail, newest first, for admins (reading it is audited too)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from medverse.service.audit.schemas import AuditEventPublic
from medverse.service.audit.store import read_audit
from medverse.service.deps import AdminDep, AuditDep, ServicesDep
from medverse.service.schemas import MAX_ID, TEXT_PATTERN, USER_PATTERN, ErrorPublic

router = APIRouter(prefix="/api/audit", tags=["audit"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorPublic} for code in (401, 403)}


@router.get("", response_model=list[AuditEventPublic], responses=_ERRORS, summary="Audit log")
def get_audit(
    services: ServicesDep,
    _admin: AdminDep,
    audit: AuditDep,
    since: datetime | None = None,
    actor: Annotated[str | None, Query(pattern=USER_PATTERN)] = None,
    resource: Annotated[str | None, Query(max_length=256, pattern=TEXT_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> list[AuditEventPublic]:
    """Audit events, filtered by time, user or resource prefix (``study/<id>``), paged by id."""
    with audit.action("audit.read", "audit"):
        events = read_audit(
            services.db,
            since=since,
            actor=actor,
            resource=resource,
            limit=limit,
            before_id=before_id,
        )
    return [AuditEventPublic.model_validate(e) for e in events]
