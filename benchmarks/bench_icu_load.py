"""bench_icu's load generator: beds at 1 Hz over MLLP, each message sent at its scheduled time.

One connection per 20 beds; each bed sends one ORU^R01 with a full NEWS2 set every second, at
an offset spread over the second; a connection waits for each ACK before its next message (HL7
original mode). The messages are built before the clock starts. Each connection is an
``asyncio.Protocol`` (no stream reader per message): a timer sends a message at its time, or
at once when the previous ACK came after that time.

Three times are kept per message, all from ``time.perf_counter`` (not the loop's cached clock):

- ``sent_to_ack``: from the bytes handed to the socket to the ACK read, the message-to-score
  latency (the listener ACKs only after the score is committed). It leaves out the
  generator's own lateness in sending;
- ``scheduled_to_ack``: from the scheduled time to the ACK, which adds the wait behind the
  previous message on the connection (original mode) and any lateness of the generator;
- ``timer_late``: how late the generator's own timer fired (its queueing; not the listener's).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BEDS_PER_CONNECTION = 20
START, END = b"\x0b", b"\x1c\x0d"


def oru(control_id: str, bed: int, second: int) -> bytes:
    """A full NEWS2 set for one bed (values vary a little so nothing looks like a flat line)."""
    when = time.strftime("%Y%m%d%H%M%S", time.gmtime(1_796_299_200 + second))
    pulse, rr = 70 + (bed + second) % 7, 14 + (bed + second) % 5
    text = "\r".join([
        f"MSH|^~\\&|MON|ICU|MEDVERSE|HOSP|{when}||ORU^R01^ORU_R01|{control_id}|P|2.6",
        f"PID|1||P{bed:06d}^^^HOSP^MR", f"PV1|1|I|W{bed // 500:03d}^^B{bed:06d}",
        f"OBX|1|NM|9279-1^RR^LN||{rr}|/min|||||F|||{when}",
        f"OBX|2|NM|59408-5^SpO2^LN||{95 + bed % 4}|%|||||F|||{when}",
        "OBX|3|NM|3151-8^O2 flow^LN||0|L/min|||||F",
        f"OBX|4|NM|8480-6^SBP^LN||{118 + second % 5}|mm[Hg]|||||F|||{when}",
        f"OBX|5|NM|8867-4^HR^LN||{pulse}|/min|||||F|||{when}",
        "OBX|6|ST|80288-4^ACVPU^LN||A||||||F",
        f"OBX|7|NM|8310-5^Temp^LN||{36.6 + (second % 3) / 10:.1f}|Cel|||||F|||{when}",
    ]) + "\r"  # fmt: skip
    return START + text.encode() + END


def schedule_for(beds: list[int], seconds: int, run: str) -> list[tuple[float, bytes]]:
    """(offset from start, framed message) of every message of these beds, in send order."""
    offsets = {bed: (bed * 0.618034) % 1.0 for bed in beds}
    order = sorted((s + offsets[b], b, s) for s in range(seconds) for b in beds)
    return [(due, oru(f"{run}-{bed}-{second}", bed, second)) for due, bed, second in order]


@dataclass
class Times:
    """Per-message times of a step, in seconds (see the module docstring)."""

    sent_to_ack: list[float] = field(default_factory=list)
    scheduled_to_ack: list[float] = field(default_factory=list)
    timer_late: list[float] = field(default_factory=list)
    last_ack: float = 0.0


class ScheduledSender(asyncio.Protocol):
    """One MLLP connection sending its schedule, one message in flight at a time."""

    def __init__(self, schedule: list[tuple[float, bytes]], times: Times) -> None:
        self.schedule, self.times = schedule, times
        self.t0 = 0.0
        self.next = 0
        self.sent_at = 0.0
        self.acked = 0
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[int] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = transport  # type: ignore[assignment]

    def start(self, t0: float) -> None:
        """Begin the schedule; ``t0`` is its zero on ``time.perf_counter``."""
        self.t0 = t0
        self._arm()

    def _arm(self) -> None:
        if self.next == len(self.schedule):
            if not self.done.done():
                self.done.set_result(self.acked)
            return
        delay = self.t0 + self.schedule[self.next][0] - time.perf_counter()
        if delay > 0:
            self.loop.call_later(delay, self._send, True)
        else:
            self._send(False)

    def _send(self, by_timer: bool) -> None:
        due, message = self.schedule[self.next]
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(message)
        if by_timer:
            self.times.timer_late.append(self.sent_at - (self.t0 + due))

    def data_received(self, data: bytes) -> None:
        """Take the ACK of the message in flight; send the next one (now or at its time)."""
        now = time.perf_counter()
        self.buffer += data
        if not self.buffer.endswith(END):
            return  # one message in flight: the ACK is whole once it ends the buffer
        ack, self.buffer = self.buffer, b""
        self.acked += b"MSA|AA|" in ack
        self.times.sent_to_ack.append(now - self.sent_at)
        self.times.scheduled_to_ack.append(now - (self.t0 + self.schedule[self.next][0]))
        self.times.last_ack = max(self.times.last_ack, now)
        self.next += 1
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """End the schedule (what was ACKed so far counts)."""
        if not self.done.done():
            self.done.set_result(self.acked)


def _ms(values: list[float]) -> dict[str, float]:
    ms = np.asarray(values or [0.0]) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }  # fmt: skip


async def offered_load(port: int, beds: int, seconds: int, run: str) -> dict[str, Any]:
    """Run one step: ``beds`` beds at 1 Hz for ``seconds``; achieved rate and latencies."""
    loop = asyncio.get_running_loop()
    groups = [list(range(i, min(i + BEDS_PER_CONNECTION, beds)))
              for i in range(0, beds, BEDS_PER_CONNECTION)]  # fmt: skip
    times = Times()
    senders = [ScheduledSender(schedule_for(g, seconds, run), times) for g in groups]
    for sender in senders:  # every connection open before the clock starts
        await loop.create_connection(lambda s=sender: s, "127.0.0.1", port)  # type: ignore[misc]
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.5
    for sender in senders:
        sender.start(t0)
    acked = sum(await asyncio.gather(*(s.done for s in senders)))
    for sender in senders:
        if sender.transport is not None:
            sender.transport.close()
    elapsed = max(times.last_ack, t0) - t0
    return {
        "beds": beds, "seconds": seconds, "offered_per_s": beds, "acked": int(acked),
        "achieved_per_s": acked / max(elapsed, 1e-9), "elapsed_s": elapsed,
        **_ms(times.sent_to_ack),
        "scheduled_to_ack": _ms(times.scheduled_to_ack),
        "generator_timer_late": _ms(times.timer_late),
        "generator_cpu_us_per_msg": (time.process_time() - cpu0) / max(acked, 1) * 1e6,
    }  # fmt: skip
