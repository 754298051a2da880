"""Group commit: vital sets from every connection are scored and stored once per loop tick.

Connections `submit` and wait; one consumer takes everything queued so far, scores it in one
batch, stores it in one transaction (in a worker thread, so the loop keeps reading) and only
then answers the waiters, which send their ACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from medverse.core.logging import get_logger
from medverse.icu.alerts import Alert
from medverse.icu.monitor import Monitor
from medverse.icu.store import ObservationStore, ScoredVitals
from medverse.icu.vitals import VitalSet

log = get_logger(__name__)


class StorageError(Exception):
    """The batch holding a vital set could not be stored (the sender must resend)."""


@dataclass(frozen=True)
class Outcome:
    """What became of one submitted vital set.

    Attributes:
        stored: True if stored now, False if it was a resend of a stored message.
        scored: The scores it was stored with (None for a resend).
        committed_at: ``time.perf_counter()`` when its transaction committed.
    """

    stored: bool
    scored: ScoredVitals | None
    committed_at: float


Listener = Callable[[list[ScoredVitals], list[Alert]], None]


class Ingestor:
    """The single writer between the inputs and the store.

    Args:
        monitor: Scores the vital sets (its state is only touched by the consumer).
        store: Where scored sets are written.
        max_batch: Most vital sets in one transaction.
    """

    def __init__(self, monitor: Monitor, store: ObservationStore, max_batch: int = 5000) -> None:
        self.monitor = monitor
        self.store = store
        self.max_batch = max_batch
        self.listeners: list[Listener] = []
        self._queue: asyncio.Queue[tuple[VitalSet, asyncio.Future[Outcome]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # the monitor is used by the writer thread and `acknowledge`
        monitor.alerts.start_ids_after(store.last_alert_id())

    def start(self) -> None:
        """Start the consumer on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._consume())

    async def stop(self) -> None:
        """Stop the consumer (queued items get a `StorageError`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(StorageError("the listener is shutting down"))

    async def submit(self, vitals: VitalSet) -> Outcome:
        """Queue a vital set; return once it is durably stored (or known to be).

        Raises:
            StorageError: If its batch could not be stored.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((vitals, future))
        return await future

    async def acknowledge(self, alert_id: int, by: str) -> Alert:
        """Record that ``by`` acknowledged an open alert now; stored before returning.

        Raises:
            InputError: If no open alert has that id.
        """

        def run() -> Alert:
            with self._lock:
                alert = self.monitor.alerts.acknowledge(alert_id, by, time.time())
                self.monitor.alerts.drain()
            self.store.save_alerts([alert])
            return alert

        alert = await asyncio.to_thread(run)
        for listener in self.listeners:
            listener([], [alert])
        return alert

    async def _consume(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            items = [vitals for vitals, _ in batch]
            try:
                outcomes = await asyncio.to_thread(self._write, items)
            except Exception as error:  # the database refused: nothing of this batch is stored
                log.error("storing %d vital sets failed: %s", len(items), error)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StorageError(f"storage failed: {error}"))
                continue
            for (_, future), outcome in zip(batch, outcomes):
                if not future.done():
                    future.set_result(outcome)

    def _write(self, items: list[VitalSet]) -> list[Outcome]:
        received = time.time()
        scored_by_key: dict[str, ScoredVitals] = {}

        def score(new: list[VitalSet]) -> list[ScoredVitals]:
            scored = self.monitor.process(new, received)
            scored_by_key.update((s.vitals.message_key, s) for s in scored)
            return scored

        with self._lock:
            fresh = self.store.append(items, score)
            committed = time.perf_counter()
            alerts = self.monitor.alerts.drain()
        self.store.save_alerts(alerts)
        new_scores = list(scored_by_key.values())
        for listener in self.listeners:
            listener(new_scores, alerts)
        return [
            Outcome(is_new, scored_by_key.get(v.message_key) if is_new else None, committed)
            for v, is_new in zip(items, fresh)
        ]
