"""Typed WebSocket messages of a room: what a client may send (validated) and server answers."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from medverse.service.rooms.document import Edit, Point3

MAX_MESSAGE_BYTES = 64 * 1024
REQUEST_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Join(_Message):
    """The first message on a socket: the caller's API token (never sent in the URL)."""

    type: Literal["join"]
    token: str = Field(max_length=200)


class EditMessage(_Message):
    """A change to the room document; the server orders it and gives it the next version.

    Attributes:
        request_id: Echoed back in the broadcast (or the rejection) so the sender can match it.
        base_version: The document version the client saw when it made the edit.
        edit: The change.
    """

    type: Literal["edit"]
    request_id: str = Field(pattern=REQUEST_ID_PATTERN)
    base_version: int = Field(ge=0)
    edit: Edit


class Pointer(_Message):
    """Where a participant points in 3D and where its crosshair is (RAS+ mm; not stored)."""

    type: Literal["pointer"]
    position: Point3 | None = None
    crosshair: Point3 | None = None


class ViewState(_Message):
    """What the presenter looks at: crosshair, layout, 3D camera and zoom."""

    crosshair: Point3
    slice_type: int = Field(ge=0, le=10)
    azimuth: float = Field(allow_inf_nan=False)
    elevation: float = Field(allow_inf_nan=False)
    zoom: float = Field(1.0, gt=0, le=100)


class View(_Message):
    """The presenter's view (relayed to followers; ignored from anyone else)."""

    type: Literal["view"]
    view: ViewState


class Ping(_Message):
    """Keep-alive; answered with ``pong`` carrying the same ``t``."""

    type: Literal["ping"]
    t: float = Field(0.0, allow_inf_nan=False)


class RehearsalControl(_Message):
    """Start (the sender drives the tool) or stop a rehearsal of a segmented structure."""

    type: Literal["rehearsal"]
    action: Literal["start", "stop"]
    structure: str = Field("spleen", pattern=r"^[a-z][a-z0-9_]{0,63}$")


class ToolMessage(_Message):
    """The rehearsal driver's tool: move to, grasp at, release at or cut to ``position``."""

    type: Literal["tool"]
    action: Literal["move", "grasp", "release", "cut"]
    position: Point3


ClientMessage = Annotated[
    EditMessage | Pointer | View | Ping | RehearsalControl | ToolMessage,
    Field(discriminator="type"),
]
_CLIENT = TypeAdapter(ClientMessage)
_JOIN = TypeAdapter(Join)


def parse_client(
    text: str,
) -> EditMessage | Pointer | View | Ping | RehearsalControl | ToolMessage:
    """Validate one message after the join.

    Raises:
        ValueError: If it is too long, not JSON, or not a known message (pydantic's
            ValidationError is a ValueError).
    """
    _check_size(text)
    return _CLIENT.validate_json(text)


def parse_join(text: str) -> Join:
    """Validate the first message of a socket.

    Raises:
        ValueError: If it is not a join message.
    """
    _check_size(text)
    return _JOIN.validate_json(text)


def encode(message_type: str, **fields: Any) -> str:
    """A server message as JSON text (encoded once, then sent to every participant)."""
    return json.dumps({"type": message_type, **fields}, separators=(",", ":"), default=str)


def _check_size(text: str) -> None:
    if len(text) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message too long (limit {MAX_MESSAGE_BYTES} bytes)")
