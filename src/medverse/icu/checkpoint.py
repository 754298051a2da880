"""WAL checkpoints of the SQLite observation store in a background thread, off the ACK path.

SQLite copies the write-ahead log back into the database file ("checkpoint") inside whichever
commit pushes the log past 1,000 pages, and in WAL mode with ``synchronous=NORMAL`` that
checkpoint fsyncs the log and the database: that one commit, and every ACK waiting on it, takes
tens of milliseconds longer on a real disk. While a `WalCheckpointer` runs, the store's writer
turns automatic checkpoints off and this thread runs a passive checkpoint (it never blocks the
writer or readers) every ``interval`` seconds on a connection of its own; once the log is past
``restart_bytes`` (256 MB) it runs a second passive pass and then a restart checkpoint, which
holds the write lock while it copies the last few frames, so that the next commit starts the log
over (the writer waits that long once per ~256 MB of log instead of once per 4 MB; each commit
logs every page it changed: the table's last pages, the last pages of the (observation time,
message key) index, and one page per ward of the ward index; the log file stays at most about
this size on disk). What a commit
survives does not change: a commit is durable once its log frames are written (and fsynced with
``synchronous=FULL``), whichever connection later checkpoints them.
"""

from __future__ import annotations

import sqlite3
import threading

from medverse.core.logging import get_logger
from medverse.icu.store import ObservationStore

log = get_logger(__name__)


class WalCheckpointer:
    """Checkpoints a SQLite store's log every ``interval`` seconds while started.

    Args:
        store: The store; nothing is done for PostgreSQL or an in-memory SQLite database.
        interval: Seconds between passive checkpoints.
        restart_bytes: Log size past which a restart checkpoint bounds the log.
    """

    def __init__(
        self, store: ObservationStore, interval: float = 0.1, restart_bytes: int = 256 << 20
    ) -> None:
        self.store = store
        self.interval = interval
        self.restart_bytes = restart_bytes
        url = store.engine.url
        self.path = url.database if url.get_backend_name() == "sqlite" else None
        if self.path in ("", ":memory:"):
            self.path = None
        self._page_size = 4096
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start checkpointing and turn the writer's automatic checkpoints off."""
        if self.path is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="icu-wal-checkpoint", daemon=True)
        self._thread.start()
        self.store.autocheckpoint = 0

    def stop(self) -> None:
        """Give checkpoints back to the writer, then stop the thread."""
        if self._thread is None:
            return
        self.store.autocheckpoint = ObservationStore.autocheckpoint
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None

    def _run(self) -> None:
        assert self.path is not None
        try:
            connection = sqlite3.connect(self.path, timeout=1.0)  # busy: next round
        except sqlite3.Error as error:  # the writer checkpoints again, as SQLite does alone
            log.warning("WAL checkpoints of %s stay with the writer: %s", self.path, error)
            self.store.autocheckpoint = ObservationStore.autocheckpoint
            return
        self._page_size = int(connection.execute("PRAGMA page_size").fetchone()[0])
        try:
            while not self._stop.wait(self.interval):
                try:
                    self._checkpoint(connection)
                except sqlite3.Error as error:  # the next round tries again
                    log.warning("WAL checkpoint of %s failed: %s", self.path, error)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames * self._page_size > self.restart_bytes:  # frames since the log began
            # under steady writes a passive checkpoint is never complete when the next commit
            # begins, so the log would only grow. A second passive pass copies what came in
            # during the first; the restart then copies the last few frames holding the write
            # lock (the writer waits that long), and the next commit starts the log over.
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
