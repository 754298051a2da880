"""Live ICU events for viewers: scores and alerts of the wards each subscriber may see."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from medverse.icu.alerts import Alert
from medverse.icu.store import ScoredVitals

QUEUE_LIMIT = 1000  # events a slow viewer may fall behind before it is dropped


@dataclass(eq=False)
class Subscriber:
    """One viewer: the wards it may see (None: every ward) and its outgoing queue."""

    wards: frozenset[str] | None
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))

    def sees(self, ward: str) -> bool:
        """Whether this viewer may see ``ward``."""
        return self.wards is None or ward in self.wards


class LiveHub:
    """Fans a committed batch out to the subscribers, on the serving loop.

    Args:
        loop: The serving loop (the writer thread hands batches over to it).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.subscribers: set[Subscriber] = set()

    def publish_from_writer(self, scores: list[ScoredVitals], alerts: list[Alert]) -> None:
        """Ingestor listener (called after the commit, maybe from the writer thread)."""
        self.loop.call_soon_threadsafe(self.publish, scores, alerts)

    def publish(self, scores: list[ScoredVitals], alerts: list[Alert]) -> None:
        """Queue the events each subscriber may see; a full queue drops that subscriber."""
        for subscriber in list(self.subscribers):
            events = [_alert_event(a) for a in alerts if subscriber.sees(a.ward)]
            items = [_score_item(s) for s in scores if subscriber.sees(s.vitals.ward)]
            if items:
                events.append(json.dumps({"type": "scores", "items": items}))
            try:
                for event in events:
                    subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.subscribers.discard(subscriber)
                subscriber.queue = asyncio.Queue(1)
                subscriber.queue.put_nowait(json.dumps({"type": "error", "detail": "too slow"}))


def _alert_event(alert: Alert) -> str:
    return json.dumps({
        "type": "alert", "id": alert.id, "bed_id": alert.bed_id, "ward": alert.ward,
        "level": alert.level.name.lower(), "reason": alert.reason, "opened_at": alert.opened_at,
        "escalations": alert.escalations, "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at, "resolved_at": alert.resolved_at,
    })  # fmt: skip


def _score_item(scored: ScoredVitals) -> dict[str, object]:
    vitals = scored.vitals
    return {
        "bed_id": vitals.bed_id, "observed_at": vitals.observed_at, "news2": scored.total,
        "news2_minimum": scored.minimum, "completeness": scored.completeness,
        "risk": scored.risk, "values": {p.value: v for p, v in vitals.values.items()},
    }  # fmt: skip
