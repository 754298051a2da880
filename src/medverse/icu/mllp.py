"""An asyncio MLLP listener for HL7 v2 ORU^R01: framing, ACK after storage, NAK with the reason.

MLLP frames are ``0x0b <message> 0x1c 0x0d``. A frame may arrive in pieces and one read may
hold several frames; a connection carries any number of messages. Each message is answered on
the same connection, in order: AA once its observation is stored (a resend of a stored
message is answered AA and not stored again), AE/AR with the reason when it cannot be used.
A connection idle longer than the read timeout is closed.

Adaptive group commit: the good messages read in one turn of the event loop, from every
connection, go to the `Ingestor` as one group at the end of that turn, unless the previous group
began less than `ListenerConfig.group_interval` (10 ms) ago: then they collect until it has, and
while a group is being stored the next ones wait and join into one batch. A lone message is
stored at once; under load groups grow (less CPU per message) and a message waits at most about
one interval plus one batch. Its ACK is written once the transaction holding it has committed
(one write per connection per group). Plain messages are read by `hl7_plain.read_plain`,
everything else by the python-hl7 based `hl7_oru` reader.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import cast

from medverse.core.errors import InputError
from medverse.core.logging import get_logger
from medverse.icu.hl7_oru import (
    AckCode,
    Hl7Error,
    Segment,
    ack_for,
    acks_for_msh,
    parse_message,
    read_oru,
    reject_unparsed,
)
from medverse.icu.hl7_plain import read_plain
from medverse.icu.pipeline import Ingestor, Outcome, StorageError
from medverse.icu.vitals import VitalSet

START, END = b"\x0b", b"\x1c\x0d"
log = get_logger(__name__)


class FrameError(Exception):
    """A frame is larger than allowed (the connection is closed)."""


class MllpFramer:
    """Collects bytes and returns the complete frames' payloads.

    Bytes outside a frame (line noise before 0x0b) are dropped.

    Args:
        max_frame: Largest payload accepted, in bytes.
    """

    def __init__(self, max_frame: int = 1 << 20) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the payloads of every frame now complete.

        Raises:
            FrameError: If a frame grows past ``max_frame``.
        """
        if not self._buffer and data[:1] == START and 0 < data.find(END, 1) == len(data) - 2:
            return [data[1:-2]]  # the common case: one whole frame in one read
        self._buffer += data
        frames: list[bytes] = []
        while True:
            start = self._buffer.find(START)
            if start < 0:
                self._buffer.clear()
                return frames
            end = self._buffer.find(END, start + 1)
            if end < 0:
                del self._buffer[:start]
                if len(self._buffer) > self.max_frame:
                    raise FrameError(f"MLLP frame over {self.max_frame} bytes")
                return frames
            frames.append(bytes(self._buffer[start + 1 : end]))
            del self._buffer[: end + 2]


def frame(message: str, encoding: str = "utf-8") -> bytes:
    """Wrap an HL7 message in MLLP framing."""
    return START + message.encode(encoding) + END


def _decode(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:  # older senders use Latin-1 (MSH-18 8859/1)
        return payload.decode("latin-1")


@dataclass(frozen=True)
class ListenerConfig:
    """MLLP listener settings.

    Attributes:
        read_timeout: Seconds a connection may stay silent before it is closed.
        max_frame: Largest message accepted, in bytes.
        group_interval: Least seconds between the starts of two groups: a message read when
            the last group began longer ago goes to the store at the end of this loop turn,
            else it waits until then (bounds the per-group cost under load; each message
            waits at most this long more).
        write_on_loop: Store each group on the event loop's own thread (no thread hop, no
            GIL handover; for a loop that serves MLLP only, as ``medverse icu listen``'s);
            False stores in a worker thread so the loop keeps serving other work meanwhile.
    """

    read_timeout: float = 60.0
    max_frame: int = 1 << 20
    group_interval: float = 0.01
    write_on_loop: bool = True


def read_message(payload: bytes) -> tuple[VitalSet, Segment] | str:
    """The vital set and MSH fields of a usable ORU^R01, or the NAK text answering it."""
    text = _decode(payload)
    plain = read_plain(text)
    if plain is not None:
        return plain
    try:
        message = parse_message(text)
    except Hl7Error as error:
        return reject_unparsed(error.problem)
    try:
        vitals = read_oru(message)
    except Hl7Error as error:
        return ack_for(message, error.code, error.problem)
    except InputError as error:  # e.g. an OBX-14 that is not an HL7 time
        return ack_for(message, AckCode.ERROR, error.problem)
    return vitals, message.first("MSH") or []


Slot = list[bytes | None]  # one message's framed reply, None until it is known


class _Connection(asyncio.Protocol):
    """One MLLP connection: frames in, replies out in message order."""

    def __init__(self, listener: MllpListener) -> None:
        self.listener = listener
        self.framer = MllpFramer(listener.config.max_frame)
        self.replies: deque[Slot] = deque()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.last_read = self.loop.time()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.listener.connections.add(self)
        self.timer = self.loop.call_later(self.listener.config.read_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        try:
            payloads = self.framer.feed(data)
        except FrameError as error:
            log.info("MLLP connection closed: %s", error)
            self.close()
            return
        for payload in payloads:
            slot: Slot = [None]
            self.replies.append(slot)
            self.listener.take(self, slot, payload)

    def flush(self) -> None:
        """Write every known reply up to the first one still waiting for storage."""
        out: list[bytes] = []
        replies = self.replies
        while replies and replies[0][0] is not None:
            out.append(cast(bytes, replies.popleft()[0]))
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def close(self) -> None:
        """Close the connection (replies not yet written are dropped)."""
        if self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        timeout = self.listener.config.read_timeout
        idle = self.loop.time() - self.last_read
        if idle >= timeout and not self.replies:
            log.info("MLLP connection closed: TimeoutError")
            self.close()
            return
        self.timer = self.loop.call_later(max(timeout - idle, 0.05), self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.listener.connections.discard(self)

    def pause_writing(self) -> None:
        # a client that does not read its ACKs is not read from either, until it catches up
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()


Waiting = tuple[_Connection, Slot, Segment]


class MllpListener:
    """Serves MLLP connections into an `Ingestor`.

    Args:
        ingestor: Stores and scores what arrives.
        config: Timeouts and limits.
    """

    def __init__(self, ingestor: Ingestor, config: ListenerConfig | None = None) -> None:
        self.ingestor = ingestor
        self.config = config or ListenerConfig()
        self.server: asyncio.Server | None = None
        self.connections: set[_Connection] = set()
        self._waiting: list[Waiting] = []
        self._vitals: list[VitalSet] = []
        self._since = 0.0  # loop time the group being collected began
        self._last = float("-inf")  # loop time the last group went to the store

    async def start(self, host: str = "127.0.0.1", port: int = 2575) -> int:
        """Start listening; returns the bound port (pass 0 for a free one)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(partial(_Connection, self), host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, then end the open connections (pending answers are dropped)."""
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.close()
        if self.server is not None:
            await self.server.wait_closed()

    def take(self, connection: _Connection, slot: Slot, payload: bytes) -> None:
        """Answer a bad message now; queue a good one for this loop turn's group."""
        read = read_message(payload)
        if isinstance(read, str):
            slot[0] = frame(read)
            connection.flush()
            return
        if not self._vitals:  # the first of a group: hand it over at the end of this loop turn
            loop = asyncio.get_running_loop()
            self._since = now = loop.time()
            delay = self._last + self.config.group_interval - now
            if delay > 0:  # the last group began less than an interval ago
                loop.call_later(delay, self._submit)
            else:
                loop.call_soon(self._submit)
        self._vitals.append(read[0])
        self._waiting.append((connection, slot, read[1]))

    def _submit(self) -> None:
        waiting, vitals = self._waiting, self._vitals
        self._waiting, self._vitals = [], []
        self._last = asyncio.get_running_loop().time()
        if not self.config.write_on_loop:
            stored = self.ingestor.submit_group(vitals, queued_at=self._since)
            stored.add_done_callback(partial(_answer_stored, waiting))
            return
        try:
            self.ingestor.store_now(vitals)
        except StorageError as error:
            _answer(waiting, error)
            return
        _answer(waiting, None)


def _answer_stored(waiting: list[Waiting], stored: asyncio.Future[list[Outcome]]) -> None:
    if not stored.cancelled():
        _answer(waiting, stored.exception())


def _answer(waiting: list[Waiting], error: BaseException | None) -> None:
    """Fill the replies of a stored group (AE with the reason if it could not be stored)."""
    code, reason = AckCode.ACCEPT, ""
    if error is not None:
        code = AckCode.ERROR
        reason = str(error) if isinstance(error, StorageError) else f"storage failed: {error}"
    touched: dict[_Connection, None] = {}
    acks = acks_for_msh([msh for _, _, msh in waiting], code, reason)
    for (connection, slot, _), ack in zip(waiting, acks):
        slot[0] = ack
        touched[connection] = None
    for connection in touched:
        connection.flush()
