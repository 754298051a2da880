"""The MLLP listener over real loopback sockets: framing, ACK after storage, NAK, crash, resend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from medverse.icu.mllp import frame
from medverse.icu.store import ObservationStore, sqlite_url, vitals_table
from tests.conftest import REPO
from tests.icu.conftest import RunningListener, start_listener
from tests.icu.hl7_tools import MllpClient, msa, oru


def test_a_frame_split_in_pieces_is_acked_after_it_is_stored(listener: RunningListener) -> None:
    client = MllpClient(listener.port)
    data = frame(oru("SPLIT1"))
    for piece in (data[:1], data[1:40], data[40:-1], data[-1:]):
        client.send_raw(piece)
        time.sleep(0.05)
    assert msa(client.read_ack())[:2] == ["AA", "SPLIT1"]
    rows = listener.runtime.store.history("ICU1/BED01")
    assert [r["message_key"] for r in rows] == ["MONITOR|ICU|SPLIT1"]
    assert rows[0]["news2_total"] == 0 and rows[0]["risk"] == "low"
    client.close()


def test_several_messages_on_one_connection(listener: RunningListener) -> None:
    client = MllpClient(listener.port)
    burst = [oru(f"B{i}", bed=f"BED{i:02d}") for i in range(5)]
    client.send_raw(b"".join(frame(m) for m in burst))  # five frames in one write
    acks = [msa(client.read_ack())[:2] for _ in burst]
    for i in range(5, 8):  # then one at a time on the same connection
        client.send(oru(f"B{i}", bed=f"BED{i:02d}"))
        acks.append(msa(client.read_ack())[:2])
    assert acks == [["AA", f"B{i}"] for i in range(8)]
    assert listener.runtime.store.count() == 8
    client.close()


def test_malformed_messages_get_a_nak_with_the_reason_and_the_connection_survives(
    listener: RunningListener,
) -> None:
    client = MllpClient(listener.port)
    client.send_raw(frame("this is not HL7"))
    code, _, reason = msa(client.read_ack())
    assert code == "AR" and "not an HL7 v2 message" in reason
    client.send(oru("BAD1", values={"pulse": "fast"}))
    code, control_id, reason = msa(client.read_ack())
    assert (code, control_id) == ("AE", "BAD1") and "OBX-5" in reason and "'fast'" in reason
    client.send(oru("BAD2").replace("ORU^R01^ORU_R01", "ADT^A01^ADT_A01"))
    code, control_id, reason = msa(client.read_ack())
    assert (code, control_id) == ("AR", "BAD2") and "ADT^A01" in reason
    client.send(oru("BAD3", values={"temperature": 37}).replace("|Cel|", "|kPa|"))
    assert "unit 'kPa'" in msa(client.read_ack())[2]
    client.send(oru("GOOD1"))
    assert msa(client.read_ack())[:2] == ["AA", "GOOD1"]
    assert listener.runtime.store.count() == 1
    client.close()


def test_a_resend_is_acked_but_stored_once(listener: RunningListener) -> None:
    client = MllpClient(listener.port)
    for _ in range(3):
        client.send(oru("SAME1", values={"pulse": 135}))
        assert msa(client.read_ack())[:2] == ["AA", "SAME1"]
    client.send_raw(frame(oru("SAME2")) * 2)  # the same message twice in one batch
    assert [msa(client.read_ack())[0] for _ in range(2)] == ["AA", "AA"]
    assert listener.runtime.store.count() == 2
    client.close()


def test_a_silent_connection_is_closed_after_the_read_timeout(tmp_path: Path) -> None:
    running = start_listener(sqlite_url(tmp_path / "icu.db"), read_timeout=0.5)
    try:
        client = MllpClient(running.port)
        client.send_raw(frame(oru("T1"))[:20])  # half a frame, then silence
        with pytest.raises(ConnectionError):
            client.read_ack()
        client.close()
    finally:
        running.close()


def _start_subprocess(store: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "medverse", "icu", "listen", "--port", "0", "--store", store],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on"):
        process.kill()
        raise AssertionError(f"listener did not start: {line!r} {process.stderr.read()}")
    return process, int(line.rsplit(":", 1)[1])


def test_killed_after_ack_the_observation_is_there_and_a_resend_is_not_duplicated(
    tmp_path: Path,
) -> None:
    store_url = sqlite_url(tmp_path / "icu.db")
    process, port = _start_subprocess(store_url)
    try:
        client = MllpClient(port)
        client.send(oru("CRASH1", values={"pulse": 140, "spo2": 90}))
        assert msa(client.read_ack())[0] == "AA"
        os.kill(process.pid, signal.SIGKILL)  # no shutdown, no flush
        process.wait(timeout=10)
        client.close()
        store = ObservationStore.open(store_url)
        rows = store.history("ICU1/BED01")
        assert [(r["message_key"], r["pulse"], r["spo2"]) for r in rows] == [
            ("MONITOR|ICU|CRASH1", 140.0, 90.0)
        ]
        store.dispose()
        process, port = _start_subprocess(store_url)
        client = MllpClient(port)
        client.send(oru("CRASH1", values={"pulse": 140, "spo2": 90}))  # its ACK was "lost"
        assert msa(client.read_ack())[0] == "AA"
        client.close()
        store = ObservationStore.open(store_url)
        assert store.count() == 1
        store.dispose()
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=10)


def test_killed_after_a_burst_every_acked_observation_is_there(tmp_path: Path) -> None:
    store_url = sqlite_url(tmp_path / "icu.db")
    process, port = _start_subprocess(store_url)  # groups stored on the loop, WAL checkpointed
    try:  # in the background: neither may lose an ACKed message
        clients = [MllpClient(port) for _ in range(3)]
        for c, client in enumerate(clients):
            client.send_raw(b"".join(frame(oru(f"K{c}-{k}", bed=f"B{c}-{k}")) for k in range(40)))
        acked = [msa(client.read_ack())[1] for client in clients for _ in range(40)]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        store = ObservationStore.open(store_url)
        stored = {key.rsplit("|", 1)[1] for key in _keys(store)}
        store.dispose()
        assert len(acked) == 120 and stored == set(acked)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _keys(store: ObservationStore) -> list[str]:
    with store.engine.connect() as connection:
        return list(connection.scalars(select(vitals_table.c.message_key)))
