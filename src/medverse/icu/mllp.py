"""An asyncio MLLP listener for HL7 v2 ORU^R01: framing, ACK after storage, NAK with the reason.

MLLP frames are ``0x0b <message> 0x1c 0x0d``. A frame may arrive in pieces and one read may
hold several frames; a connection carries any number of messages. Each message is answered on
the same connection, in order: AA once its observation is stored (a resend of a stored
message is answered AA and not stored again), AE/AR with the reason when it cannot be used.
A connection idle longer than the read timeout is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from medverse.core.logging import get_logger
from medverse.icu.hl7_oru import (
    AckCode,
    Hl7Error,
    ack_for,
    parse_message,
    read_oru,
    reject_unparsed,
)
from medverse.icu.pipeline import Ingestor, StorageError

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
    """

    read_timeout: float = 60.0
    max_frame: int = 1 << 20


async def answer(ingestor: Ingestor, payload: bytes) -> str:
    """The ACK or NAK for one framed message, after storing its observation when it is good."""
    try:
        message = parse_message(_decode(payload))
    except Hl7Error as error:
        return reject_unparsed(error.problem)
    try:
        vitals = read_oru(message)
    except Hl7Error as error:
        return ack_for(message, error.code, error.problem)
    try:
        await ingestor.submit(vitals)
    except StorageError as error:
        return ack_for(message, AckCode.ERROR, str(error))
    return ack_for(message, AckCode.ACCEPT)


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
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 2575) -> int:
        """Start listening; returns the bound port (pass 0 for a free one)."""
        self.server = await asyncio.start_server(self._serve, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, then end the open connections (pending answers are dropped)."""
        if self.server is not None:
            self.server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = MllpFramer(self.config.max_frame)
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), self.config.read_timeout)
                if not data:
                    break
                payloads = framer.feed(data)
                if payloads:
                    replies = await asyncio.gather(*(answer(self.ingestor, p) for p in payloads))
                    writer.write(b"".join(frame(reply) for reply in replies))
                    await writer.drain()
        except (TimeoutError, FrameError, ConnectionError) as error:
            log.info("MLLP connection closed: %s", type(error).__name__)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
