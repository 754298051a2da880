"""Group commit over real sockets: replies keep message order; what a commit survives is chosen."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from medverse.icu.api import IcuRuntime
from medverse.icu.checkpoint import WalCheckpointer
from medverse.icu.hl7_oru import parse_message, read_oru
from medverse.icu.mllp import frame
from medverse.icu.monitor import Monitor
from medverse.icu.store import Durability, ObservationStore, sqlite_url
from tests.icu.conftest import RunningListener, start_listener
from tests.icu.hl7_tools import MllpClient, msa, oru


def test_a_nak_between_good_messages_keeps_its_place(listener: RunningListener) -> None:
    client = MllpClient(listener.port)
    burst = [
        oru("G1", bed="B1"),
        oru("G2", bed="B2", values={"pulse": "fast"}),
        oru("G3", bed="B3"),
    ]
    client.send_raw(b"".join(frame(m) for m in burst))  # the NAK is known before the ACKs
    answers = [msa(client.read_ack())[:2] for _ in burst]
    assert answers == [["AA", "G1"], ["AE", "G2"], ["AA", "G3"]]
    assert listener.runtime.store.count() == 2
    client.close()


@pytest.mark.parametrize("write_on_loop", [True, False], ids=["on-loop", "worker-thread"])
def test_many_connections_in_one_group_are_all_stored_and_answered(
    tmp_path: Path, write_on_loop: bool
) -> None:
    listener = start_listener(sqlite_url(tmp_path / "icu.db"), write_on_loop=write_on_loop)
    clients = [MllpClient(listener.port) for _ in range(8)]
    for i, client in enumerate(clients):  # sent before any ACK is read: one group or a few
        client.send_raw(b"".join(frame(oru(f"M{i}-{k}", bed=f"B{i}-{k}")) for k in range(5)))
    for i, client in enumerate(clients):
        assert [msa(client.read_ack())[:2] for _ in range(5)] == [
            ["AA", f"M{i}-{k}"] for k in range(5)
        ]
        client.close()
    assert listener.runtime.store.count() == 40
    listener.close()


@pytest.mark.parametrize("write_on_loop", [True, False], ids=["on-loop", "worker-thread"])
def test_a_batch_the_database_refuses_is_answered_ae_and_a_resend_is_stored(
    tmp_path: Path, write_on_loop: bool
) -> None:
    listener = start_listener(sqlite_url(tmp_path / "icu.db"), write_on_loop=write_on_loop)
    client = MllpClient(listener.port)
    database = sqlite3.connect(tmp_path / "icu.db", isolation_level=None)
    database.execute("ALTER TABLE icu_vitals RENAME TO icu_vitals_away")
    client.send(oru("REFUSED1"))
    code, control_id, reason = msa(client.read_ack())[:3]
    assert (code, control_id) == ("AE", "REFUSED1")
    assert "storage failed" in reason and "icu_vitals" in reason
    database.execute("ALTER TABLE icu_vitals_away RENAME TO icu_vitals")
    database.close()
    client.send(oru("REFUSED1"))  # the same connection, the sender resends
    assert msa(client.read_ack())[:2] == ["AA", "REFUSED1"]
    assert [r["message_key"] for r in listener.runtime.store.history("ICU1/BED01")] == [
        "MONITOR|ICU|REFUSED1"
    ]
    client.close()
    listener.close()


def test_background_checkpoints_keep_the_database_file_current(tmp_path: Path) -> None:
    store = ObservationStore.open(sqlite_url(tmp_path / "icu.db"))
    checkpoints = WalCheckpointer(store, interval=0.05)
    checkpoints.start()
    assert store.autocheckpoint == 0  # commits no longer checkpoint (and fsync) themselves
    runtime = IcuRuntime(store, Monitor())
    sets = [read_oru(parse_message(oru(f"CK{i}", bed=f"B{i}"))) for i in range(30)]
    runtime.ingestor.store_now(sets)
    deadline = time.monotonic() + 20
    while (count := _rows_in_main_file(tmp_path)) != 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count == 30
    checkpoints.stop()
    assert store.autocheckpoint == ObservationStore.autocheckpoint
    store.dispose()


@pytest.mark.parametrize(
    ("durability", "synchronous"), [(Durability.PROCESS, 1), (Durability.POWER, 2)]
)
def test_durability_sets_how_sqlite_commits(
    tmp_path: Path, durability: Durability, synchronous: int
) -> None:
    store = ObservationStore.open(sqlite_url(tmp_path / "icu.db"), durability)
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == synchronous
    store.dispose()


def _rows_in_main_file(folder: Path) -> int:
    """Rows a copy of ``icu.db`` alone holds (without the write-ahead log beside it)."""
    copy = folder / "copy.db"
    shutil.copyfile(folder / "icu.db", copy)
    try:
        with contextlib.closing(sqlite3.connect(copy)) as database:
            return int(database.execute("SELECT count(*) FROM icu_vitals").fetchone()[0])
    except sqlite3.OperationalError:  # not even the table is checkpointed yet
        return 0
    finally:
        copy.unlink()


def test_under_steady_writes_the_log_is_started_over_and_stays_bounded(tmp_path: Path) -> None:
    store = ObservationStore.open(sqlite_url(tmp_path / "icu.db"))
    checkpoints = WalCheckpointer(store, interval=0.01, restart_bytes=256 << 10)
    checkpoints.start()
    runtime = IcuRuntime(store, Monitor())
    for second in range(120):  # 120 batches of 50 beds, committed back to back
        batch = [
            oru(
                f"S{second}-{b}", bed=f"B{b}", when=f"2026120312{second // 60:02d}{second % 60:02d}"
            )
            for b in range(50)
        ]
        runtime.ingestor.store_now([read_oru(parse_message(m)) for m in batch])
    checkpoints.stop()
    wal = (tmp_path / "icu.db-wal").stat().st_size
    assert store.count() == 6000
    store.dispose()
    assert wal < 2 << 20, f"write-ahead log grew to {wal} bytes"
