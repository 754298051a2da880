"""``/api/icu``: FHIR in; beds, NEWS2, alerts and a live socket out; a clinician sees its wards."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from medverse.core.errors import InputError
from medverse.icu.alerts import Alert
from medverse.icu.fhir import FhirError, read_observation
from medverse.icu.parameters import PARAMETERS
from medverse.icu.pipeline import StorageError
from medverse.service.audit.store import Outcome
from medverse.service.auth.security import Principal, authenticate, require_role
from medverse.service.deps import AuditDep, PrincipalDep, Services
from medverse.service.errors import ForbiddenError, NotFoundError
from medverse.service.icu.live import LiveHub, Subscriber
from medverse.service.icu.runtime import RuntimeDep, runtime_of
from medverse.service.icu.schemas import AlertPublic, BedPublic, MembershipPublic, ScorePublic
from medverse.service.schemas import ErrorPublic
from medverse.service.tables import Role

router = APIRouter(prefix="/api/icu", tags=["icu"])
_ERRORS: dict[int | str, dict[str, Any]] = {c: {"model": ErrorPublic} for c in (400, 401, 403, 404)}
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
JOIN_TIMEOUT_S = 10.0


def _check_ward(runtime: RuntimeDep, principal: Principal, ward: str) -> None:
    require_role(principal, Role.ADMIN, Role.CLINICIAN)
    if principal.role == Role.CLINICIAN and ward not in runtime.store.wards_of(principal.name):
        raise ForbiddenError(f"ward {ward} is not one of yours")


@router.post(
    "/wards/{ward}/beds/{bed}/observations", response_model=ScorePublic, status_code=201,
    responses=_ERRORS, summary="Store and score one FHIR R4 Observation",
)  # fmt: skip
async def post_observation(
    ward: Name, bed: Name, runtime: RuntimeDep, principal: PrincipalDep, audit: AuditDep,
    observation: Annotated[dict[str, Any], Body()],
) -> ScorePublic:  # fmt: skip
    """Validate (fhir.resources R4B), map LOINC, score NEWS2 and store; 422 names the field."""
    resource = f"icu/{ward}/{bed}"
    with audit.action("icu.observation", resource, record_ok=False):
        _check_ward(runtime, principal, ward)
    try:
        vitals = read_observation(observation, ward, bed)
    except FhirError as error:
        audit.record("icu.observation", resource, Outcome.REJECTED, "HTTP 422")
        loc = ("body", *error.field.split(".")[1:])
        raise RequestValidationError(
            [{"loc": loc, "msg": error.problem, "type": "value_error"}]
        ) from None
    try:
        outcome = await runtime.ingestor.submit(vitals)
    except StorageError as error:
        raise InputError(str(error)) from error
    scored = outcome.scored
    return ScorePublic(
        stored=outcome.stored, news2_total=scored.total if scored else None,
        news2_minimum=scored.minimum if scored else None,
        completeness=scored.completeness if scored else None, risk=scored.risk if scored else None,
        suppressed=[f"{p.value}: {r}" for p, r in scored.suppressed] if scored else [],
    )  # fmt: skip


@router.get("/wards/{ward}/beds", response_model=list[BedPublic], responses=_ERRORS,
            summary="Every bed of a ward with its newest NEWS2")  # fmt: skip
def list_beds(
    ward: Name, runtime: RuntimeDep, principal: PrincipalDep, audit: AuditDep
) -> list[BedPublic]:
    """The newest stored vital set and score of each bed (audited as a read)."""
    with audit.action("icu.ward.read", f"icu/{ward}"):
        _check_ward(runtime, principal, ward)
        rows = runtime.store.latest_by_bed(ward)
    return [
        BedPublic(
            **{k: r[k] for k in BedPublic.model_fields if k != "values"},
            values={p.value: r[p.value] for p in PARAMETERS},
        )
        for r in rows
    ]


def _public(alert: Alert) -> AlertPublic:
    return AlertPublic(
        id=alert.id, bed_id=alert.bed_id, ward=alert.ward, level=alert.level.name.lower(),
        reason=alert.reason, opened_at=alert.opened_at, escalations=alert.escalations,
        acknowledged_by=alert.acknowledged_by, acknowledged_at=alert.acknowledged_at,
        resolved_at=alert.resolved_at,
    )  # fmt: skip


@router.get("/alerts", response_model=list[AlertPublic], responses=_ERRORS,
            summary="Open alerts of the wards you may see")  # fmt: skip
def list_alerts(runtime: RuntimeDep, principal: PrincipalDep) -> list[AlertPublic]:
    """Admins see every ward; a clinician the wards it is a member of."""
    require_role(principal, Role.ADMIN, Role.CLINICIAN)
    wards = None if principal.role == Role.ADMIN else runtime.store.wards_of(principal.name)
    return [_public(a) for a in runtime.store.alerts(wards)]


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertPublic, responses=_ERRORS,
             summary="Acknowledge an open alert (audited)")  # fmt: skip
async def acknowledge(
    alert_id: int, runtime: RuntimeDep, principal: PrincipalDep, audit: AuditDep
) -> AlertPublic:
    """Record who acknowledged the alert and when; refused for another ward's alert."""
    with audit.action("icu.alert.acknowledge", f"icu/alert/{alert_id}"):
        known = {a.id: a for a in runtime.store.alerts(None)}
        if alert_id not in known:
            raise NotFoundError(f"no open alert {alert_id}")
        _check_ward(runtime, principal, known[alert_id].ward)
        alert = await runtime.ingestor.acknowledge(alert_id, principal.name)
    return _public(alert)


@router.put("/wards/{ward}/members/{user}", response_model=MembershipPublic, responses=_ERRORS,
            summary="Give a clinician access to a ward (admin)")  # fmt: skip
def add_member(
    ward: Name, user: Name, runtime: RuntimeDep, principal: PrincipalDep, audit: AuditDep
) -> MembershipPublic:
    """Admins only; audited."""
    with audit.action("icu.ward.member", f"icu/{ward}/{user}"):
        require_role(principal, Role.ADMIN)
        runtime.store.set_member(user, ward)
    return MembershipPublic(user=user, wards=runtime.store.wards_of(user))


@router.websocket("/live")
async def live(websocket: WebSocket) -> None:
    """Live scores and alerts of your wards: send ``{"type": "join", "token": ...}`` first.

    Then ``{"type": "alert", ...}`` and ``{"type": "scores", "items": [...]}`` arrive as
    batches are committed; ``{"type": "ping"}`` is answered with ``{"type": "pong"}``.
    """
    await websocket.accept()
    services: Services = websocket.app.state.services
    try:
        join = json.loads(await asyncio.wait_for(websocket.receive_text(), JOIN_TIMEOUT_S))
        token = str(join["token"]) if join.get("type") == "join" else ""
    except (TimeoutError, ValueError, KeyError, TypeError, WebSocketDisconnect):
        token = ""
    runtime = runtime_of(websocket.app, services)
    principal = await run_in_threadpool(_principal, services, token) if token else None
    if principal is None or principal.role not in (Role.ADMIN, Role.CLINICIAN):
        await websocket.send_text(json.dumps({"type": "error", "detail": "join refused"}))
        await websocket.close(4401 if principal is None else 4403)
        return
    wards = (
        None if principal.role == Role.ADMIN else frozenset(runtime.store.wards_of(principal.name))
    )
    hub: LiveHub = websocket.app.state.icu_hub
    subscriber = Subscriber(wards)
    hub.subscribers.add(subscriber)
    sender = asyncio.create_task(_send_events(websocket, subscriber))
    await websocket.send_text(json.dumps({"type": "joined", "wards": sorted(wards or ["*"])}))
    try:
        while True:
            message = json.loads(await websocket.receive_text())
            if isinstance(message, dict) and message.get("type") == "ping":
                subscriber.queue.put_nowait(json.dumps({"type": "pong"}))
    except (WebSocketDisconnect, ValueError, RuntimeError, asyncio.QueueFull):
        pass
    finally:
        hub.subscribers.discard(subscriber)
        sender.cancel()


def _principal(services: Services, token: str) -> Principal | None:
    pepper = services.settings.token_pepper.get_secret_value()
    with services.db.reading() as session:
        return authenticate(session, token, pepper)


async def _send_events(websocket: WebSocket, subscriber: Subscriber) -> None:
    try:
        while True:
            await websocket.send_text(await subscriber.queue.get())
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
