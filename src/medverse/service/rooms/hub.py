"""Live rooms in this process: participants, ordered edits, and fan-out to every socket."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from medverse.core.logging import get_logger
from medverse.service.db import Database
from medverse.service.rooms.document import (
    AddAnnotation,
    AnnotationKind,
    Edit,
    EditRejectedError,
    RoomDocument,
    SetPresenter,
    apply_edit,
)
from medverse.service.rooms.messages import Pointer, ViewState, encode
from medverse.service.rooms.store import (
    SNAPSHOT_EVERY,
    StoredEdit,
    append_edits,
    load_document,
    save_snapshot,
)

_LOG = get_logger(__name__)
# Colours handed out in join order (distinct on dark and light backgrounds).
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
)
OUTBOX_LIMIT = 1000
# Room edits one user may make per minute (all rooms together): a person annotating makes a
# few; a flood would make every viewer of the room slow to join.
EDITS_PER_MINUTE = 120


@dataclass
class Participant:
    """One socket in a room.

    Attributes:
        id: Unique per connection.
        name: The user name (two tabs of one user are two participants).
        role: The user's role.
        color: Colour of the user's pointer and annotations (``#rrggbb``).
        outbox: Messages waiting to be written to the socket; None closes it.
    """

    id: str
    name: str
    role: str
    color: str
    outbox: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(OUTBOX_LIMIT))

    def public(self) -> dict[str, str]:
        """What the others see of this participant."""
        return {"id": self.id, "name": self.name, "role": self.role, "color": self.color}


@dataclass
class PendingEdit:
    """An applied edit waiting for its batch to be stored before it is sent to anyone."""

    stored: StoredEdit
    message: str
    done: asyncio.Future[None]


@dataclass
class Room:
    """One open room: its document, its participants and their last pointers and view.

    Attributes:
        document: The head: every edit applied so far, stored or not yet.
        published: What everyone has been sent (and the database holds): late joiners get it.
        pending: Applied edits waiting to be stored, in version order.
        snapshot_version: The version of the latest stored snapshot.
    """

    document: RoomDocument
    published: RoomDocument
    participants: dict[str, Participant] = field(default_factory=dict)
    pointers: dict[str, dict[str, Any]] = field(default_factory=dict)
    view: dict[str, Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: list[PendingEdit] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None
    snapshot_version: int = 0

    def send_all(self, text: str, *, skip: str | None = None) -> None:
        """Queue ``text`` for every participant (but ``skip``); a full outbox closes that one."""
        for participant in list(self.participants.values()):
            if participant.id == skip:
                continue
            try:
                participant.outbox.put_nowait(text)
            except asyncio.QueueFull:
                _LOG.warning("room participant %s too slow; disconnecting", participant.id)
                self.participants.pop(participant.id, None)
                close_outbox(participant)

    def presence(self) -> str:
        """The participant list message."""
        return encode("presence", participants=[p.public() for p in self.participants.values()])

    def welcome(self, you: Participant) -> str:
        """The first message to a new participant: the document, then the live state."""
        return encode(
            "welcome",
            you=you.public(),
            document=self.published.model_dump(mode="json"),
            participants=[p.public() for p in self.participants.values()],
            pointers=self.pointers,
            view=self.view,
        )


class RoomHub:
    """Every open room of this service process; edits go through here to be ordered and stored.

    A room is opened (its document loaded) when the first participant joins and dropped from
    memory when the last one leaves. An edit is applied under the room's lock (which orders
    it and gives it its version), then stored, and only then sent to every participant, so
    all of them see the edits in version order and an edit anyone has seen survives a
    restart. Storing is group-committed: the edits that arrive while one batch is being
    written go together in the next one, so a burst of edits costs a few writes, not one each.

    Args:
        db: The service database.
        volume_ml: Measures a study's labelled structure in mL (None if nothing measured it).
        edits_per_minute: Most edits one user may make in any minute.
    """

    def __init__(
        self,
        db: Database,
        volume_ml: Callable[[str, int], float | None] | None = None,
        edits_per_minute: int = EDITS_PER_MINUTE,
    ) -> None:
        self.db = db
        self.rooms: dict[str, Room] = {}
        self._opening = asyncio.Lock()
        self._volume_ml = volume_ml
        self.edits_per_minute = edits_per_minute
        self._recent: dict[str, deque[float]] = {}
        self._throttled: set[str] = set()

    def disconnect_user(self, name: str) -> int:
        """Close every socket of user ``name`` (removed): returns how many were open."""
        closed = 0
        for room in list(self.rooms.values()):
            for participant in list(room.participants.values()):
                if participant.name == name:
                    close_outbox(participant)
                    closed += 1
        return closed

    def _throttle(self, name: str) -> None:
        """Count one edit of ``name``; refuse it past the per-minute limit."""
        now = time.monotonic()
        recent = self._recent.setdefault(name, deque())
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self.edits_per_minute:
            first = name not in self._throttled
            self._throttled.add(name)
            raise EditRateLimitedError(
                f"too many room edits: at most {self.edits_per_minute} per minute per user; "
                f"wait {60.0 - (now - recent[0]):.0f} s and try again",
                first=first,
            )
        self._throttled.discard(name)
        recent.append(now)

    async def _measured(self, study_id: str, edit: Edit) -> Edit:
        """A volume annotation with the server's measurement in place of the client's value."""
        if not isinstance(edit, AddAnnotation) or edit.annotation.kind != AnnotationKind.VOLUME:
            return edit
        label = edit.annotation.label
        value = None
        if label is not None and self._volume_ml is not None:
            value = await run_in_threadpool(self._volume_ml, study_id, label)
        if value is None:
            raise EditRejectedError(
                f"no finished segmentation of this study measures label {label}; run a job first"
            )
        draft = edit.annotation.model_copy(update={"value": value})
        return edit.model_copy(update={"annotation": draft})

    async def document(self, study_id: str) -> RoomDocument:
        """The current document of a room, open or not."""
        room = self.rooms.get(study_id)
        if room is not None:
            return room.published
        return await run_in_threadpool(load_document, self.db, study_id)

    async def join(self, study_id: str, name: str, role: str) -> tuple[Room, Participant]:
        """Add a participant (opening the room if needed) and queue its welcome."""
        async with self._opening:
            room = self.rooms.get(study_id)
            if room is None:
                document = await run_in_threadpool(load_document, self.db, study_id)
                room = self.rooms[study_id] = Room(document, document)
        async with room.lock:
            used = {p.color for p in room.participants.values()}
            color = next((c for c in PALETTE if c not in used), PALETTE[len(used) % len(PALETTE)])
            participant = Participant(uuid.uuid4().hex[:12], name, role, color)
            room.participants[participant.id] = participant
            participant.outbox.put_nowait(room.welcome(participant))
            room.send_all(room.presence(), skip=participant.id)
        return room, participant

    async def leave(self, study_id: str, participant: Participant) -> None:
        """Remove a participant; the room is snapshotted and closed when it is empty."""
        room = self.rooms.get(study_id)
        if room is None:
            return
        await self._stop_presenting(room, participant)
        async with room.lock:
            room.participants.pop(participant.id, None)
            room.pointers.pop(participant.id, None)
            room.send_all(room.presence())
            if room.participants:
                return
        flusher = room.flusher
        if flusher is not None:
            await asyncio.shield(flusher)
        if room.published.version > room.snapshot_version:
            await self._snapshot(room)
        async with self._opening:
            if not room.participants and self.rooms.get(study_id) is room:
                del self.rooms[study_id]

    async def edit(
        self,
        room: Room,
        participant: Participant,
        edit: Edit,
        request_id: str,
        base: int,
        *,
        limit: bool = True,
    ) -> int:
        """Apply, store and broadcast one edit; returns its version once everyone is sent it.

        Raises:
            EditRejectedError: If the edit does not fit the document, changes another user's
                annotation (EditForbiddenError), or comes past the user's rate limit
                (EditRateLimitedError).
            EditNotStoredError: If the database did not take it (it is then not applied).
        """
        if limit:
            self._throttle(participant.name)
        edit = await self._measured(room.document.study_id, edit)
        async with room.lock:
            document, change = apply_edit(
                room.document,
                edit,
                author=participant.name,
                color=participant.color,
                may_edit_others=participant.role == "admin",
            )
            room.document = document
            message = encode(
                "edit",
                version=document.version,
                base_version=base,
                request_id=request_id,
                by=participant.id,
                change=change,
            )
            at = document.updated_at or datetime.now(UTC)
            pending = PendingEdit(
                StoredEdit(document.version, change, at),
                message,
                asyncio.get_running_loop().create_future(),
            )
            room.pending.append(pending)
            if room.flusher is None:
                room.flusher = asyncio.create_task(self._flush(room))
        await pending.done
        return document.version

    async def _stop_presenting(self, room: Room, participant: Participant) -> None:
        """A presenter who leaves (with no other tab of theirs open) stops being presenter."""
        others = [p for p in room.participants.values() if p.id != participant.id]
        if room.document.presenter != participant.name or any(
            p.name == participant.name for p in others
        ):
            return
        stop = SetPresenter(op="presenter.set", present=False)
        try:
            await self.edit(room, participant, stop, "left", room.document.version, limit=False)
        except Exception as error:  # the room stays usable; the next presenter replaces it
            _LOG.warning("room presenter not cleared on leave: %s", type(error).__name__)

    def pointer(self, room: Room, participant: Participant, message: Pointer) -> None:
        """Relay a participant's pointer and crosshair to the others (kept for late joiners)."""
        state = {"position": message.position, "crosshair": message.crosshair}
        room.pointers[participant.id] = state
        room.send_all(encode("pointer", by=participant.id, **state), skip=participant.id)

    def view(self, room: Room, participant: Participant, view: ViewState) -> bool:
        """Relay the presenter's view to the others; False (ignored) from anyone else."""
        if room.published.presenter != participant.name:
            return False
        room.view = {"by": participant.id, **view.model_dump(mode="json")}
        room.send_all(encode("view", by=participant.id, view=room.view), skip=participant.id)
        return True

    async def _flush(self, room: Room) -> None:
        """Store the pending edits batch by batch, sending each batch once it is stored."""
        while True:
            async with room.lock:
                batch, room.pending = room.pending, []
                head = room.document
                if not batch:
                    room.flusher = None
                    return
            study_id = head.study_id
            try:
                await run_in_threadpool(append_edits, self.db, study_id, [p.stored for p in batch])
            except Exception as error:  # the store failed: nothing of this batch is applied
                _LOG.error("room %s edits not stored: %s", study_id, type(error).__name__)
                async with room.lock:
                    failed, room.pending = batch + room.pending, []
                    room.document = room.published
                    room.flusher = None
                for pending in failed:
                    if not pending.done.done():  # its sender may have left meanwhile
                        pending.done.set_exception(EditNotStoredError(str(error)))
                return
            async with room.lock:
                room.published = head
                if head.presenter is None:
                    room.view = None
                for pending in batch:
                    room.send_all(pending.message)
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_result(None)
            if head.version - room.snapshot_version >= SNAPSHOT_EVERY:
                await self._snapshot(room)

    async def _snapshot(self, room: Room) -> None:
        """Store the published document as the room's snapshot (a failure only logs)."""
        document = room.published
        try:
            await run_in_threadpool(save_snapshot, self.db, document)
        except Exception as error:  # the edit log still holds everything
            _LOG.warning("room %s snapshot not stored: %s", document.study_id, error)
            return
        room.snapshot_version = max(room.snapshot_version, document.version)


class EditRateLimitedError(EditRejectedError):
    """An edit past its user's per-minute limit.

    Args:
        message: The refusal, saying the limit and when to try again.
        first: True for the first refusal of a burst (the one that is audited).
    """

    def __init__(self, message: str, *, first: bool) -> None:
        super().__init__(message)
        self.first = first


class EditNotStoredError(RuntimeError):
    """The database did not take an edit, so it was not applied (the message says why)."""


def close_outbox(participant: Participant) -> None:
    """Drop what is still queued for ``participant`` and queue the close marker."""
    while not participant.outbox.empty():
        participant.outbox.get_nowait()
    participant.outbox.put_nowait(None)
