"""Group commit: vital sets from every connection are scored and stored in one transaction.

Inputs `submit` and wait; one consumer takes everything queued when the previous batch is
done (and, with a ``window``, what joins within it, counted from the oldest waiting set),
scores it in one batch, stores it in one transaction (in a worker thread, so the loop keeps
reading) and only then answers the waiters, which send their ACKs. Each batch has a fixed
cost (numpy scoring, trends, the transaction), so batches should not be tiny under load. The
MLLP listener paces its own groups (at most one per `ListenerConfig.group_interval`) and stores
each with `Ingestor.store_now` on its event loop's thread: no hop to a worker and back.
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


@dataclass(slots=True)  # not frozen: one per message on the hot path (see `VitalSet`)
class Outcome:
    """What became of one submitted vital set (read-only by convention).

    Attributes:
        stored: True if stored now, False if it was a resend of a stored message.
        scored: The scores it was stored with (None for a resend).
        committed_at: ``time.perf_counter()`` when its transaction committed.
    """

    stored: bool
    scored: ScoredVitals | None
    committed_at: float


Listener = Callable[[list[ScoredVitals], list[Alert]], None]
Group = tuple[list[VitalSet], asyncio.Future[list[Outcome]], float]  # sets, answer, queued at


class Ingestor:
    """The single writer between the inputs and the store.

    Args:
        monitor: Scores the vital sets (its state is only touched by the consumer).
        store: Where scored sets are written.
        max_batch: Most vital sets in one transaction.
        window: Seconds a batch waits for more sets after its oldest one was queued (0: it
            takes what is queued when the previous batch is done; the MLLP listener paces
            its own groups).
    """

    def __init__(
        self,
        monitor: Monitor,
        store: ObservationStore,
        max_batch: int = 5000,
        window: float = 0.0,
    ) -> None:
        self.monitor = monitor
        self.store = store
        self.max_batch = max_batch
        self.window = window
        self.listeners: list[Listener] = []
        self._queue: asyncio.Queue[Group] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # the monitor is used by the writer thread and `acknowledge`
        monitor.alerts.start_ids_after(store.last_alert_id())

    @property
    def running(self) -> bool:
        """True while the consumer task is alive (between `start` and `stop`)."""
        return self._task is not None and not self._task.done()

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
            future = self._queue.get_nowait()[1]
            if not future.done():
                future.set_exception(StorageError("the listener is shutting down"))

    async def submit(self, vitals: VitalSet) -> Outcome:
        """Queue a vital set; return once it is durably stored (or known to be).

        Raises:
            StorageError: If its batch could not be stored.
        """
        return (await self.submit_group([vitals]))[0]

    def submit_group(
        self, items: list[VitalSet], queued_at: float | None = None
    ) -> asyncio.Future[list[Outcome]]:
        """Queue vital sets; the future gives their outcomes, in order, once stored.

        Call it on the loop's thread. The future's exception is a `StorageError` if their
        batch could not be stored.

        Args:
            items: The vital sets.
            queued_at: Loop time the oldest of them arrived (default now); the window counts
                from it, so a caller that collected them for a while does not wait twice.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Outcome]] = loop.create_future()
        self._queue.put_nowait((items, future, loop.time() if queued_at is None else queued_at))
        return future

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

    async def _take(self) -> list[Group]:
        """The next batch: the oldest group and whatever joins it within the window."""
        loop = asyncio.get_running_loop()
        groups = [await self._queue.get()]
        size = len(groups[0][0])
        while size < self.max_batch:
            if self._queue.empty():
                wait = groups[0][2] + self.window - loop.time()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
                continue
            groups.append(self._queue.get_nowait())
            size += len(groups[-1][0])
        return groups

    async def _consume(self) -> None:
        while True:
            groups = await self._take()
            items = [vitals for group, _, _ in groups for vitals in group]
            try:
                outcomes = await asyncio.to_thread(self.store_now, items)
            except StorageError as error:  # nothing of this batch is stored
                for _, future, _ in groups:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for group, future, _ in groups:
                if not future.done():
                    future.set_result(outcomes[start : start + len(group)])
                start += len(group)

    def store_now(self, items: list[VitalSet]) -> list[Outcome]:
        """Score and store ``items`` as one batch on the calling thread; durable on return.

        The MLLP listener calls it on its event loop's thread (no hop to a worker thread and
        back); everything else goes through `submit_group`.

        Raises:
            StorageError: If the database refused the batch (nothing of it is stored).
        """
        try:
            return self._write(items)
        except Exception as error:
            log.error("storing %d vital sets failed: %s", len(items), error)
            raise StorageError(f"storage failed: {error}") from error

    def _write(self, items: list[VitalSet]) -> list[Outcome]:
        received = time.time()
        new_scores: list[ScoredVitals] = []

        def score(new: list[VitalSet]) -> list[ScoredVitals]:
            new_scores.extend(self.monitor.process(new, received))
            return new_scores

        with self._lock:
            fresh = self.store.append(items, score)
            committed = time.perf_counter()
            alerts = self.monitor.alerts.drain()
        self.store.save_alerts(alerts)
        for listener in self.listeners:
            listener(new_scores, alerts)
        scores = iter(new_scores)  # one per fresh item, in order
        return [
            Outcome(True, next(scores), committed) if is_new else Outcome(False, None, committed)
            for is_new in fresh
        ]
