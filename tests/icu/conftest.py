"""ICU fixtures: a live MLLP listener on loopback (in a thread) and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medverse.icu.api import IcuRuntime, open_runtime, serve_mllp
from medverse.icu.mllp import ListenerConfig
from medverse.icu.store import sqlite_url
from tests.service import postgres


@dataclass
class RunningListener:
    """A listener serving in a background thread."""

    port: int
    runtime: IcuRuntime
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    thread: threading.Thread

    def close(self) -> None:
        """Stop the listener and wait for its thread."""
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=20)
        self.runtime.store.dispose()


def start_listener(
    store_url: str, read_timeout: float = 30.0, write_on_loop: bool = True
) -> RunningListener:
    """Serve MLLP on a free loopback port in a thread; returns once it listens."""
    runtime = open_runtime(store_url)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []
    stop = asyncio.Event()

    def on_ready(bound: int) -> None:
        port.append(bound)
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        config = ListenerConfig(read_timeout=read_timeout, write_on_loop=write_on_loop)
        loop.run_until_complete(serve_mllp(runtime, "127.0.0.1", 0, config, on_ready, stop))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(20):
        raise TimeoutError("the MLLP listener did not start")
    return RunningListener(port[0], runtime, loop, stop, thread)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[RunningListener]:
    """A listener writing to a SQLite store in ``tmp_path``."""
    running = start_listener(sqlite_url(tmp_path / "icu.db"))
    yield running
    running.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An empty database on a throw-away PostgreSQL (skipped without the binaries)."""
    if not postgres.available():
        pytest.skip(f"PostgreSQL server binaries not found in {postgres.BIN}")
    server = postgres.start_server()
    try:
        yield server.create_database()
    finally:
        server.stop()
