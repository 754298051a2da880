"""Typed entry points the CLI and Python users call: listen for HL7 v2, replay WFDB records."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medverse.core.errors import ConfigError
from medverse.icu.checkpoint import WalCheckpointer
from medverse.icu.mllp import ListenerConfig, MllpListener
from medverse.icu.monitor import Monitor, MonitorConfig
from medverse.icu.parameters import PARAMETERS, Parameter
from medverse.icu.pipeline import Ingestor
from medverse.icu.store import Durability, ObservationStore, ScoredVitals
from medverse.icu.vitals import Source, VitalSet
from medverse.icu.wfdb_source import VitalSeries, read_series


@dataclass
class IcuRuntime:
    """A store, a monitor and the ingestor between them (what every input writes through).

    Attributes:
        store: The observation store.
        monitor: Per-bed state and scoring.
        ingestor: The group-commit writer (start it on a running loop).
    """

    store: ObservationStore
    monitor: Monitor
    ingestor: Ingestor = field(init=False)

    def __post_init__(self) -> None:
        self.ingestor = Ingestor(self.monitor, self.store)


def open_runtime(
    store_url: str,
    config: MonitorConfig | None = None,
    durability: Durability = Durability.PROCESS,
) -> IcuRuntime:
    """Open the store at ``store_url`` and a monitor that knows each bed's SpO2 scale."""
    store = ObservationStore.open(store_url, durability)
    scale_2 = {bed for bed, on in store.scales().items() if on}
    return IcuRuntime(store, Monitor(config, scale_2=scale_2))


async def serve_mllp(
    runtime: IcuRuntime,
    host: str = "127.0.0.1",
    port: int = 2575,
    config: ListenerConfig | None = None,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the MLLP listener until ``stop`` is set (or SIGINT/SIGTERM when None).

    Args:
        runtime: Where observations go.
        host: Address to bind (loopback by default).
        port: TCP port (0: a free one, given to ``on_ready``).
        config: Listener timeouts and limits.
        on_ready: Called with the bound port once listening.
        stop: Set it to stop; by default SIGINT/SIGTERM stop the listener.
    """
    stop = stop or _stop_on_signals()
    listener = MllpListener(runtime.ingestor, config)
    runtime.ingestor.start()
    bound = await listener.start(host, port)
    checkpoints = WalCheckpointer(runtime.store)  # no checkpoint fsync inside an ACKed commit
    checkpoints.start()
    if on_ready is not None:
        on_ready(bound)
    try:
        await stop.wait()
    finally:
        await listener.close()
        await runtime.ingestor.stop()
        checkpoints.stop()


def _stop_on_signals() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, event.set)
    return event


def listen(
    store_url: str,
    host: str = "127.0.0.1",
    port: int = 2575,
    read_timeout: float = 60.0,
    on_ready: Callable[[int], None] | None = None,
    durability: Durability = Durability.PROCESS,
) -> None:
    """Listen for HL7 v2 ORU^R01 over MLLP, storing scored observations in ``store_url``.

    Args:
        store_url: ``sqlite:///path`` or ``postgresql+psycopg://...``.
        host: Address to bind.
        port: TCP port (0: any free port).
        read_timeout: Seconds a silent connection is kept open.
        on_ready: Called with the bound port once listening.
        durability: What an ACKed message survives on SQLite (`store.Durability`).
    """
    runtime = open_runtime(store_url, durability=durability)
    _tune_gc()
    try:
        # on the loop's thread unless each commit waits for an fsync (the loop reads meanwhile)
        config = ListenerConfig(read_timeout, write_on_loop=durability != Durability.POWER)
        _run(serve_mllp(runtime, host, port, config, on_ready))
    finally:
        runtime.store.dispose()


def _tune_gc() -> None:
    """Garbage collection for a listener process (it is the process's own setting).

    Per message the listener makes a few short-lived objects, freed by reference counting,
    and keeps little; with Python's default (a young-generation pass every 700 net container
    allocations, over everything start-up made too) collections cost about 5 us a message.
    What start-up made is frozen (never scanned again) and the young generation is collected
    every 20,000 net allocations; memory stays bounded, cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it comes with the service extra), else asyncio.

    A caller already inside an event loop (a notebook, a sync Playwright session) gets the
    coroutine run to completion on a thread of its own, since a loop cannot be nested.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _run_here(main)
        return
    failure: list[BaseException] = []

    def target() -> None:
        try:
            _run_here(main)
        except BaseException as error:  # handed back to the caller below
            failure.append(error)

    worker = threading.Thread(target=target, name="medverse-icu-run")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def _run_here(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


@dataclass
class BedSummary:
    """What a replayed bed produced.

    Attributes:
        bed_id: ``ward/bed``.
        stored: Vital sets stored.
        complete: How many had a complete NEWS2.
        highest: Highest complete NEWS2 (None if never complete).
        last: The last stored set's NEWS2 text (total and risk, or why none).
        suppressed: Values kept out by the quality checks.
    """

    bed_id: str
    stored: int = 0
    complete: int = 0
    highest: int | None = None
    last: str = ""
    suppressed: int = 0

    def add(self, scored: ScoredVitals) -> None:
        """Count one stored set."""
        self.stored += 1
        self.suppressed += len(scored.suppressed)
        if scored.total is not None:
            self.complete += 1
            self.highest = max(self.highest or 0, scored.total)
            self.last = f"NEWS2 {scored.total} ({scored.risk})"
        else:
            self.last = f"{scored.completeness} (at least {scored.minimum})"


@dataclass
class ReplaySummary:
    """Per-bed results of a replay."""

    beds: dict[str, BedSummary] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """One line per bed."""
        return [
            f"{b.bed_id}: {b.stored} stored, {b.complete} with a complete NEWS2, highest "
            f"{b.highest if b.highest is not None else '-'}, last {b.last}, "
            f"{b.suppressed} values suppressed"
            for b in self.beds.values()
        ]


def replay(
    records: Sequence[str | Path],
    store_url: str,
    *,
    speed: float = 60.0,
    ward: str = "REPLAY",
    max_seconds: float | None = None,
    assume: Mapping[Parameter, float] | None = None,
) -> ReplaySummary:
    """Replay WFDB records as live beds (one bed per record) into the store.

    Args:
        records: Record paths without suffix.
        store_url: Where scored observations are stored.
        speed: Recording seconds per wall-clock second (60: a minute each second).
        ward: Ward of the replayed beds.
        max_seconds: Replay at most this much of each recording.
        assume: Values sent with every set for parameters the recording lacks (e.g. ACVPU
            alert); declared by the caller, stored as sent, never filled in silently.

    Raises:
        InputError: If a record cannot be read.
        ConfigError: If ``speed`` is not positive.
    """
    if speed <= 0:
        raise ConfigError(f"replay speed must be positive, not {speed}")
    series = [read_series(r) for r in records]
    runtime = open_runtime(store_url)
    summary = ReplaySummary({f"{ward}/{s.name}": BedSummary(f"{ward}/{s.name}") for s in series})
    try:
        _run(_replay_all(runtime, series, speed, ward, max_seconds, assume or {}, summary))
    finally:
        runtime.store.dispose()
    return summary


async def _replay_all(
    runtime: IcuRuntime, series: list[VitalSeries], speed: float, ward: str,
    max_seconds: float | None, assume: Mapping[Parameter, float], summary: ReplaySummary,
) -> None:  # fmt: skip
    runtime.ingestor.start()
    start = time.time()
    try:
        await asyncio.gather(
            *(
                _replay_bed(runtime, s, speed, ward, max_seconds, assume, start, summary)
                for s in series
            )
        )
    finally:
        await runtime.ingestor.stop()


async def _replay_bed(
    runtime: IcuRuntime, series: VitalSeries, speed: float, ward: str,
    max_seconds: float | None, assume: Mapping[Parameter, float], start: float,
    summary: ReplaySummary,
) -> None:  # fmt: skip
    bed = summary.beds[f"{ward}/{series.name}"]
    loop = asyncio.get_running_loop()
    wall_start = loop.time()
    for seconds, row in zip(series.seconds, series.values):
        if max_seconds is not None and seconds > max_seconds:
            break
        delay = wall_start + seconds / speed - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        values = {p: float(v) for p, v in zip(PARAMETERS, row) if np.isfinite(v)}
        values.update({p: v for p, v in assume.items() if p not in values})
        if not values:
            continue
        observed = start + float(seconds)
        vitals = VitalSet(
            f"wfdb|{ward}/{series.name}|{observed:.3f}", ward, series.name, observed, values,
            Source.WFDB,
        )  # fmt: skip
        outcome = await runtime.ingestor.submit(vitals)
        if outcome.scored is not None:
            bed.add(outcome.scored)


def prune(store_url: str, keep_days: float, now: float | None = None) -> int:
    """Retention: delete vital sets observed more than ``keep_days`` ago; returns how many.

    Raises:
        ConfigError: If ``keep_days`` is not positive.
    """
    if keep_days <= 0:
        raise ConfigError(f"--keep-days must be positive, not {keep_days}")
    store = ObservationStore.open(store_url)
    try:
        return store.delete_before((now if now is not None else time.time()) - keep_days * 86400)
    finally:
        store.dispose()
