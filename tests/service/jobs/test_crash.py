"""Crash test: ``kill -9`` a ``medverse worker`` mid-job; a new worker finishes the job once.

Real processes on a free loopback port sharing one SQLite data dir: ``medverse serve
--no-worker`` answers the API, ``medverse worker`` processes run the jobs. Leases are 3 s so
the dead worker's job is re-queued quickly.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from medverse.core.settings import Settings
from medverse.service.db import open_database
from tests.service.conftest import MODEL, add_token, ct_files
from tests.service.postgres import _free_port

LEASE_SECONDS = 3.0


@dataclass
class Processes:
    """The service processes of one test, stopped by PID at the end."""

    folder: Path
    env: dict[str, str]
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``medverse <args>`` with its output in ``<name>.log``."""
        log = (self.folder / f"{name}.log").open("wb")
        self.logs.append(log)
        command = [sys.executable, "-m", "medverse.cli", *args]
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        """SIGTERM each process still running, SIGKILL it after 20 s."""
        for process in self.running:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for log in self.logs:
            log.close()

    def output(self) -> str:
        """Every process's log (for failure messages)."""
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in self.folder.glob("*.log"))


@pytest.fixture
def processes(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Processes]:
    """Environment for service processes on ``tmp_path`` (SQLite, the tiny CT model)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / tiny_checkpoint.name).write_bytes(tiny_checkpoint.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDVERSE_")}
    env.update(
        MEDVERSE_DATA_DIR=str(tmp_path / "data"),
        MEDVERSE_MODELS_DIR=str(tmp_path / "models"),
        MEDVERSE_DEVICE="cpu",
        MEDVERSE_LEASE_SECONDS=str(LEASE_SECONDS),
        MEDVERSE_HEARTBEAT_SECONDS="0.5",
        MEDVERSE_POLL_SECONDS="0.2",
        MEDVERSE_MAX_ATTEMPTS="3",
    )
    running = Processes(tmp_path, env)
    yield running
    running.stop_all()


def _wait_for(check: object, what: str, processes: Processes, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not seen in {timeout} s\n{processes.output()}")


def test_job_of_a_killed_worker_completes_once_on_a_new_worker(processes: Processes) -> None:
    data = Path(processes.env["MEDVERSE_DATA_DIR"])
    settings = Settings(data_dir=data, models_dir=Path(processes.env["MEDVERSE_MODELS_DIR"]))
    db = open_database(settings)
    headers = add_token(db, settings, "admin-1", "admin")
    db.dispose()
    port = _free_port()
    processes.start("serve", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))
    first = processes.start("worker-1", "worker")
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)

    def up() -> bool:
        try:
            return api.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    _wait_for(up, "the service", processes)
    study = api.post("/api/studies", files=ct_files()).json()
    job_id = api.post("/api/jobs", json={"study_id": study["id"], "model": MODEL}).json()["id"]

    def job() -> dict[str, object]:
        return dict(api.get(f"/api/jobs/{job_id}").json())

    _wait_for(lambda: job()["state"] == "running", "the job running", processes)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    killed = job()
    assert (killed["state"], killed["attempts"]) == ("running", 1), "the job ended before the kill"
    processes.start("worker-2", "worker")
    _wait_for(lambda: job()["state"] in ("succeeded", "failed"), "the job's end", processes)

    done = job()
    assert (done["state"], done["attempts"], done["error"]) == ("succeeded", 2, None)
    assert len(done["results"]) == 5  # type: ignore[arg-type]
    assert [p.name for p in (data / "results").iterdir()] == [job_id]
    report = api.get(f"/api/jobs/{job_id}/results/report.json")
    assert report.status_code == 200 and report.json()["structures"]
    api.close()
    with sqlite3.connect(data / "medverse.db") as connection:
        jobs = connection.execute("SELECT count(*) FROM jobs").fetchone()[0]
        instances = connection.execute(
            "SELECT count(*), count(DISTINCT study_id || sop_instance_uid) FROM instances"
        ).fetchone()
    assert jobs == 1
    assert instances[0] == instances[1] == 40  # the CT and its de-identified copy, once each
