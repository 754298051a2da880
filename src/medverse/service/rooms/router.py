"""``/api/rooms/{study_id}``: the room document (REST) and the live room (WebSocket ``/ws``)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from medverse.core.logging import get_logger
from medverse.service.audit.store import AuditLog, Outcome, record_failed_sign_in
from medverse.service.auth.security import Principal, authenticate
from medverse.service.deps import AuditDep, PrincipalDep, Services, ServicesDep
from medverse.service.errors import NotFoundError, ServiceError, UnauthorizedError
from medverse.service.rooms.document import EditForbiddenError, EditRejectedError, RoomDocument
from medverse.service.rooms.hub import (
    EditRateLimitedError,
    Participant,
    Room,
    RoomHub,
    close_outbox,
)
from medverse.service.rooms.messages import (
    EditMessage,
    Ping,
    Pointer,
    RehearsalControl,
    ToolMessage,
    View,
    encode,
    parse_client,
    parse_join,
)
from medverse.service.rooms.rehearsal import ToolEvent
from medverse.service.rooms.rehearsals import Rehearsals
from medverse.service.schemas import ID_PATTERN, ErrorPublic
from medverse.service.studies.store import check_access, load_study

router = APIRouter(prefix="/api/rooms", tags=["rooms"])
_LOG = get_logger(__name__)
JOIN_TIMEOUT_S = 10.0
# Close codes: 4000 + the HTTP status of the refusal.
CLOSE_BAD_JOIN = 4400
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (401, 403, 404)
}


def hub_of(app: Any) -> RoomHub:
    """The app's room hub (made by ``install_rooms``)."""
    hub: RoomHub = app.state.rooms
    return hub


def rehearsals_of(app: Any) -> Rehearsals:
    """The app's rehearsals (made by ``install_rooms``)."""
    rehearsals: Rehearsals = app.state.rehearsals
    return rehearsals


@router.get(
    "/{study_id}", response_model=RoomDocument, responses=_ERRORS, summary="A room's document"
)
async def get_room(
    study_id: Annotated[str, Path(pattern=ID_PATTERN)],
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> RoomDocument:
    """The shared document of a study's room: annotations, presenter and version."""
    await run_in_threadpool(_check_study, services, principal, audit, study_id, "room.read")
    return await hub_of(request.app).document(study_id)


@router.websocket("/{study_id}/ws")
async def room_socket(websocket: WebSocket, study_id: str) -> None:
    """Join a study's room: send ``{"type": "join", "token": ...}`` first.

    The server answers ``welcome`` (you, the document, participants, pointers, the
    presenter's view), then streams ``presence``, ``edit`` (versioned), ``pointer`` and
    ``view`` messages. A refused join gets an ``error`` message and close code 4000 + the HTTP
    status (4401, 4403, 4404).
    """
    await websocket.accept()
    services: Services = websocket.app.state.services
    principal = await _admit(websocket, services, study_id)
    if principal is None:
        return
    hub = hub_of(websocket.app)
    room, participant = await hub.join(study_id, principal.name, principal.role.value)
    rehearsals = rehearsals_of(websocket.app)
    rehearsals.welcome(room, participant)
    writer = asyncio.create_task(_write(websocket, participant))
    client = websocket.client.host if websocket.client else "unknown"
    audit = AuditLog(services.db, principal, client)
    try:
        await _read(websocket, hub, room, participant, audit)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left, or the writer closed a socket that fell behind
    finally:
        await hub.leave(study_id, participant)
        await rehearsals.left(room, participant)
        close_outbox(participant)
        await writer


async def _admit(websocket: WebSocket, services: Services, study_id: str) -> Principal | None:
    """Read the join message, authenticate it and check the study; audit the outcome."""
    try:
        join = parse_join(await asyncio.wait_for(websocket.receive_text(), JOIN_TIMEOUT_S))
    except (TimeoutError, ValueError, WebSocketDisconnect, KeyError):
        await _refuse(websocket, CLOSE_BAD_JOIN, 'first send {"type": "join", "token": "..."}')
        return None
    client = websocket.client.host if websocket.client else "unknown"
    try:
        return await run_in_threadpool(_authorise, services, join.token, study_id, client)
    except ServiceError as error:
        await _refuse(websocket, 4000 + error.status_code, error.detail)
        return None


def _authorise(services: Services, token: str, study_id: str, client: str) -> Principal:
    pepper = services.settings.token_pepper.get_secret_value()
    with services.db.reading() as session:
        principal = authenticate(session, token, pepper)
    if principal is None:
        _LOG.warning("rejected an invalid API token on a room socket from %s", client)
        record_failed_sign_in(services.db, client, f"room/{study_id[:40]}", "invalid token")
        raise UnauthorizedError("invalid or revoked API token")
    audit = AuditLog(services.db, principal, client)
    if not re.fullmatch(ID_PATTERN, study_id):
        audit.record("room.join", "study/invalid/room", Outcome.NOT_FOUND)
        raise NotFoundError(f"no study {study_id[:40]!r}")
    _check_study(services, principal, audit, study_id, "room.join")
    return principal


def _check_study(
    services: Services, principal: Principal, audit: AuditLog, study_id: str, action: str
) -> None:
    """Refuse unless the study exists and ``principal`` may read it (audited either way)."""
    with audit.action(action, f"study/{study_id}/room"), services.db.reading() as session:
        check_access(principal, load_study(session, study_id))


async def _refuse(websocket: WebSocket, code: int, detail: str) -> None:
    try:
        await websocket.send_text(encode("error", code=code, detail=detail))
        await websocket.close(code)
    except (WebSocketDisconnect, RuntimeError):
        pass


async def _read(
    websocket: WebSocket, hub: RoomHub, room: Room, participant: Participant, audit: AuditLog
) -> None:
    """Handle the participant's messages until the socket closes."""
    while True:
        text = await websocket.receive_text()
        try:
            message = parse_client(text)
        except ValueError as error:
            _send(participant, encode("error", code=400, detail=_short(error)))
            continue
        if isinstance(message, EditMessage):
            await _edit(hub, room, participant, message, audit)
        elif isinstance(message, Pointer):
            hub.pointer(room, participant, message)
        elif isinstance(message, View):
            if not hub.view(room, participant, message.view):
                _send(participant, encode("error", code=409, detail="you are not the presenter"))
        elif isinstance(message, Ping):
            _send(participant, encode("pong", t=message.t))
        elif isinstance(message, RehearsalControl | ToolMessage):
            await _rehearse(rehearsals_of(websocket.app), room, participant, message)


_STARTING: set[asyncio.Task[None]] = set()


async def _start(rehearsals: Rehearsals, room: Room, participant: Participant, name: str) -> None:
    try:
        await rehearsals.start(room, participant, name)
    except ServiceError as error:
        _send(participant, encode("error", code=error.status_code, detail=error.detail))
    except Exception as error:  # the room goes on; the starter is told
        _LOG.error("rehearsal did not start: %s", type(error).__name__)
        _send(participant, encode("error", code=500, detail="the rehearsal could not start"))


async def _rehearse(
    rehearsals: Rehearsals,
    room: Room,
    participant: Participant,
    message: RehearsalControl | ToolMessage,
) -> None:
    """Start or stop the room's rehearsal, or move its tool; a refusal goes to the sender."""
    try:
        if isinstance(message, ToolMessage):
            rehearsals.drive(room, participant, ToolEvent(message.action, message.position))
        elif message.action == "start":  # meshing may take a minute: the socket reads on
            task = asyncio.create_task(_start(rehearsals, room, participant, message.structure))
            _STARTING.add(task)
            task.add_done_callback(_STARTING.discard)
        else:
            await rehearsals.stop(room, participant)
    except ServiceError as error:
        _send(participant, encode("error", code=error.status_code, detail=error.detail))


async def _edit(
    hub: RoomHub, room: Room, participant: Participant, message: EditMessage, audit: AuditLog
) -> None:
    """Apply one edit, or tell the sender why not; every edit and refusal is audited.

    Of a burst past the rate limit only the first refusal is audited (the log is not flooded).
    """
    edit = message.edit
    target = getattr(edit, "id", None) or getattr(getattr(edit, "annotation", None), "id", "")
    resource, what = f"study/{room.document.study_id}/room", f"{edit.op} {target}".strip()
    try:
        await hub.edit(room, participant, edit, message.request_id, message.base_version)
    except EditRejectedError as error:
        _send(participant, encode("rejected", request_id=message.request_id, detail=str(error)))
        if not isinstance(error, EditRateLimitedError) or error.first:
            outcome = Outcome.DENIED if isinstance(error, EditForbiddenError) else Outcome.REJECTED
            await run_in_threadpool(audit.record, "room.edit", resource, outcome, str(error))
        return
    except Exception as error:  # the store failed: the edit is not applied, say so
        _LOG.error("room edit not stored: %s", type(error).__name__)
        detail = "the edit could not be stored; it was not applied"
        _send(participant, encode("rejected", request_id=message.request_id, detail=detail))
        return
    await run_in_threadpool(audit.record, "room.edit", resource, Outcome.OK, what)


async def _write(websocket: WebSocket, participant: Participant) -> None:
    """Send the participant's queued messages in order; None closes the socket."""
    try:
        while (text := await participant.outbox.get()) is not None:
            await websocket.send_text(text)
        await websocket.close()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


def _send(participant: Participant, text: str) -> None:
    try:
        participant.outbox.put_nowait(text)
    except asyncio.QueueFull:
        close_outbox(participant)


def _short(error: ValueError) -> str:
    return str(error).splitlines()[0][:300] if str(error) else type(error).__name__
