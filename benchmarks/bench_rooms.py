"""Room fan-out latency on loopback: one presenter, N WebSocket participants, p50/p99.

Starts ``medverse serve --no-worker`` on a free 127.0.0.1 port with a temp data dir (SQLite),
one study and one clinician token, opens N room sockets (2, 10, 50 by default) plus a sender,
and measures, for every participant, the time from the sender's ``send`` to that
participant's receipt of:

- ``pointer`` events (live 3D pointer, relayed in memory), and
- ``edit`` events (an annotation: validated, ordered, written to the database, then fanned
  out), the stricter path.

Every client runs in this process (one clock). Events are paced (``--interval`` ms apart) and
counted (``--events``), so a run is bounded. Results go to ``benchmarks/results/rooms.json``;
the last line printed is ``p99_ms_50_clients: X.X`` (edit events, the stored path).

    .venv/bin/python benchmarks/bench_rooms.py [--clients 2 10 50] [--events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvloop
from websockets.asyncio.client import ClientConnection, connect

from medverse.core.settings import Settings
from medverse.service.auth.accounts import add_user, issue_token
from medverse.service.db import open_database
from medverse.service.tables import Study

RESULTS = Path(__file__).resolve().parent / "results" / "rooms.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(data_dir: Path) -> tuple[str, str]:
    """One study and one clinician token in a fresh data dir."""
    settings = Settings(data_dir=data_dir, models_dir=data_dir / "models")
    db = open_database(settings)
    add_user(db, "bench", "clinician")
    token = issue_token(db, "bench", settings.token_pepper.get_secret_value())
    study_id = str(uuid.uuid4())
    with db.writing() as session:
        session.add(Study(id=study_id, study_uid=f"2.25.{uuid.uuid4().int}", kind="dicom",
                          identified=False, created_by="bench"))  # fmt: skip
    db.dispose()
    return study_id, token


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "medverse.cli", "serve", "--no-worker",
               "--data-dir", str(data_dir), "--port", str(port)]  # fmt: skip
    env = {**os.environ, "MEDVERSE_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code < 500:
                return process
        except httpx.TransportError:
            time.sleep(0.3)
    process.terminate()
    raise RuntimeError("the service did not start within 90 s")


async def join(url: str, token: str) -> ClientConnection:
    socket_ = await connect(url, max_size=2**20)
    await socket_.send(json.dumps({"type": "join", "token": token}))
    while json.loads(await socket_.recv())["type"] != "welcome":
        pass
    return socket_


async def listen(
    socket_: ClientConnection, kind: str, count: int, arrivals: dict[int, float]
) -> None:
    """Record when each of ``count`` events of ``kind`` arrives (keyed by sequence number)."""
    while len(arrivals) < count:
        text = await socket_.recv()
        now = time.perf_counter()  # before parsing: the client's own work is not counted
        message = json.loads(text)
        if message["type"] != kind:
            continue
        if kind == "pointer":
            seq = int(message["position"][0])
        else:
            seq = int(message["change"]["annotation"]["text"])
        arrivals[seq] = now


def pointer(seq: int) -> str:
    return json.dumps({"type": "pointer", "position": [seq, 0.0, 0.0], "crosshair": None})


def edit(seq: int) -> str:
    annotation = {"id": uuid.uuid4().hex, "kind": "comment", "points": [[1.0, 2.0, 3.0]],
                  "text": str(seq)}  # fmt: skip
    return json.dumps({"type": "edit", "request_id": uuid.uuid4().hex, "base_version": 0,
                       "edit": {"op": "annotation.add", "annotation": annotation}})  # fmt: skip


async def run_round(
    url: str, token: str, clients: int, kind: str, events: int, interval_s: float
) -> list[float]:
    """Latencies (ms) of ``events`` events of ``kind`` to each of ``clients`` participants."""
    sender = await join(url, token)
    receivers = [await join(url, token) for _ in range(clients)]
    arrivals: list[dict[int, float]] = [{} for _ in receivers]
    tasks = [asyncio.create_task(listen(r, kind, events, a)) for r, a in zip(receivers, arrivals)]
    drain = asyncio.create_task(_drain(sender))
    sent: dict[int, float] = {}
    make = pointer if kind == "pointer" else edit
    for seq in range(events):
        text = make(seq)
        sent[seq] = time.perf_counter()
        await sender.send(text)
        await asyncio.sleep(interval_s)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    drain.cancel()
    for s in (sender, *receivers):
        await s.close()
    return [(a[seq] - sent[seq]) * 1000 for a in arrivals for seq in range(events)]


async def _drain(socket_: ClientConnection) -> None:
    while True:
        await socket_.recv()


def summary(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
        "samples": int(values.size),
    }


async def bench(url: str, token: str, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in ("pointer", "edit"):
        for clients in args.clients:
            latencies = await run_round(
                url, token, clients, kind, args.events, args.interval / 1000
            )
            stats = summary(latencies)
            results[f"{kind}_{clients}_clients"] = stats
            print(f"{kind:8s} {clients:3d} clients: p50 {stats['p50_ms']:6.2f} ms  "
                  f"p99 {stats['p99_ms']:6.2f} ms  max {stats['max_ms']:6.2f} ms "
                  f"({stats['samples']} deliveries)")  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[2, 10, 50])
    parser.add_argument("--events", type=int, default=200, help="events per round")
    parser.add_argument("--interval", type=float, default=20.0, help="ms between events")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rooms-") as folder:
        data_dir = Path(folder)
        study_id, token = prepare(data_dir)
        port = free_port()
        server = start_server(data_dir, port)
        try:
            url = f"ws://127.0.0.1:{port}/api/rooms/{study_id}/ws"
            results = uvloop.run(bench(url, token, args))
        finally:
            server.terminate()
            server.wait(30)
    record = {
        "benchmark": "room fan-out latency, loopback, one process of clients, SQLite",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), {platform.system()}",
        "events_per_round": args.events,
        "interval_ms": args.interval,
        "goal": "p99 under 20 ms with 50 clients",
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    p99 = results.get("edit_50_clients", next(iter(results.values())))["p99_ms"]
    print(f"p99_ms_50_clients: {p99:.1f}")


if __name__ == "__main__":
    main()
