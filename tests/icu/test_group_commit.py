"""Group commit over real sockets: replies keep message order; what a commit survives is chosen."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from medverse.icu.mllp import frame
from medverse.icu.store import Durability, ObservationStore, sqlite_url
from tests.icu.conftest import RunningListener
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


def test_many_connections_in_one_group_are_all_stored_and_answered(
    listener: RunningListener,
) -> None:
    clients = [MllpClient(listener.port) for _ in range(8)]
    for i, client in enumerate(clients):  # sent before any ACK is read: one group or a few
        client.send_raw(b"".join(frame(oru(f"M{i}-{k}", bed=f"B{i}-{k}")) for k in range(5)))
    for i, client in enumerate(clients):
        assert [msa(client.read_ack())[:2] for _ in range(5)] == [
            ["AA", f"M{i}-{k}"] for k in range(5)
        ]
        client.close()
    assert listener.runtime.store.count() == 40


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
