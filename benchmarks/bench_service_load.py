"""Bounded load test of the service on loopback: concurrent uploads, then jobs on 2 workers.

Starts ``medverse serve --no-worker`` and two ``medverse worker`` processes on a free
127.0.0.1 port (SQLite in a temp data dir by default, ``--postgres`` for a throw-away
PostgreSQL), then:

1. uploads the sample CT series (20 slices) ``--uploads`` times at once (50 by default);
2. queues ``--jobs`` segmentation jobs (20) with a small CT model fitted to that series, and
   polls until every job has finished.

It checks that the study is stored once (one identified study plus its de-identified copy,
20 instances each), that every job succeeded on its first attempt and was started exactly
once (worker logs), and that no request got an error answer. It prints requests/s and
p50/p99 latencies and merges them into ``benchmarks/results/service_load.json`` under the
backend's name. Every request goes to 127.0.0.1; counts and the total time are bounded
(``--deadline`` seconds), and all processes are stopped by PID.

    .venv/bin/python benchmarks/bench_service_load.py [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the test helpers: PostgreSQL server, the fitted tiny model

from medverse.core.settings import Settings  # noqa: E402
from medverse.service.auth.accounts import add_user, issue_token  # noqa: E402
from medverse.service.db import open_database  # noqa: E402

CT_SERIES = REPO.parent / "shared" / "data" / "dicom_ct_series_totalsegmentator" / "dicom"
RESULTS = REPO / "benchmarks" / "results" / "service_load.json"
MODEL = "ct_tiny"


@dataclass
class Timings:
    """Latencies (s) and statuses of one kind of request."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def summary(self, wall: float) -> dict[str, Any]:
        """Count, requests/s over ``wall``, p50/p99/max latency in ms, statuses."""
        values = np.asarray(self.latencies) * 1000.0
        return {
            "requests": len(self.latencies),
            "wall_s": round(wall, 3),
            "requests_per_s": round(len(self.latencies) / wall, 2) if wall else None,
            "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
            "max_ms": round(float(values.max()), 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


async def _timed(timings: Timings, request: Any) -> httpx.Response:
    started = time.perf_counter()
    response: httpx.Response = await request
    timings.latencies.append(time.perf_counter() - started)
    timings.statuses[response.status_code] += 1
    return response


async def upload_all(client: httpx.AsyncClient, count: int) -> tuple[Timings, float, set[str]]:
    """Upload the CT series ``count`` times at once; return timings, wall time, study ids."""
    files = [(p.name, p.read_bytes()) for p in sorted(CT_SERIES.iterdir())]
    timings = Timings()

    def one() -> Any:
        fields = [("files", (name, data, "application/dicom")) for name, data in files]
        return client.post("/api/studies", files=fields)

    started = time.perf_counter()
    answers = await asyncio.gather(*(_timed(timings, one()) for _ in range(count)))
    wall = time.perf_counter() - started
    return timings, wall, {a.json()["id"] for a in answers if a.status_code < 300}


async def run_jobs(
    client: httpx.AsyncClient, study_id: str, count: int, deadline: float
) -> tuple[Timings, float, Timings, float, list[dict[str, Any]]]:
    """Queue ``count`` jobs at once and poll until all have finished."""
    submit, polls = Timings(), Timings()
    body = {"study_id": study_id, "model": MODEL}
    started = time.perf_counter()
    queued = await asyncio.gather(
        *(_timed(submit, client.post("/api/jobs", json=body)) for _ in range(count))
    )
    submit_wall = time.perf_counter() - started
    ids = [a.json()["id"] for a in queued if a.status_code == 202]
    finished: dict[str, dict[str, Any]] = {}
    while len(finished) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(finished)} of {len(ids)} jobs finished in time")
        await asyncio.sleep(0.5)
        for job_id in [i for i in ids if i not in finished]:
            job = (await _timed(polls, client.get(f"/api/jobs/{job_id}"))).json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                finished[job_id] = job
    return submit, submit_wall, polls, time.perf_counter() - started, [finished[i] for i in ids]


class Service:
    """The serve and worker processes (stopped by PID)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> None:
        """Start ``medverse <args>``, output in ``<name>.log``."""
        with (self.folder / f"{name}.log").open("wb") as log:
            command = [sys.executable, "-m", "medverse.cli", *args]
            self.processes.append(
                subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            )

    def stop(self) -> None:
        """SIGTERM all, SIGKILL what is left after 30 s."""
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def worker_starts(self) -> Counter[str]:
        """How many times each job id was started, from the worker logs."""
        starts: Counter[str] = Counter()
        for log in self.folder.glob("worker-*.log"):
            starts.update(re.findall(r"job ([0-9a-f-]{36}): attempt \d+ on", log.read_text()))
        return starts


def _model(folder: Path) -> None:
    from tests.inference.helpers import ct_plan, fit_checkpoint, read_ct

    ct, labels = read_ct()
    plan = ct_plan((12.0, 12.0, 12.0)).model_copy(update={"patch_size": (48, 48, 8)})
    fit_checkpoint(ct, labels, plan, folder / f"{MODEL}.pt", steps=10, lr=1e-2)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_up(client: httpx.AsyncClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the service did not start")


async def measure(
    args: argparse.Namespace, folder: Path, database_url: str | None
) -> dict[str, Any]:
    """Run the load against fresh service processes; return the figures and checks."""
    deadline = time.monotonic() + args.deadline
    (folder / "models").mkdir()
    _model(folder / "models")
    settings = Settings(data_dir=folder / "data", database_url=database_url)
    db = open_database(settings)
    add_user(db, "load-admin", "admin")
    token = issue_token(db, "load-admin", settings.token_pepper.get_secret_value())
    db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDVERSE_")}
    env.update(
        MEDVERSE_DATA_DIR=str(folder / "data"),
        MEDVERSE_MODELS_DIR=str(folder / "models"),
        MEDVERSE_DEVICE="cpu",
        MEDVERSE_NUM_THREADS="1",
        MEDVERSE_POLL_SECONDS="0.2",
        COLUMNS="400",  # log lines unwrapped, so the worker logs can be counted
    )
    if database_url:
        env["MEDVERSE_DATABASE_URL"] = database_url
    port = _free_port()
    service = Service(folder, env)
    try:
        service.start("serve", "serve", "--no-worker", "--port", str(port))
        for number in range(1, args.workers + 1):
            service.start(f"worker-{number}", "worker")
        limits = httpx.Limits(max_connections=args.uploads, max_keepalive_connections=args.uploads)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(300.0),
            limits=limits,
        ) as client:
            await _wait_up(client, deadline)
            figures = await _load(client, args, deadline)
    finally:
        service.stop()
    figures["checks"]["jobs_started_exactly_once"] = sorted(service.worker_starts().items()) == [
        (job_id, 1) for job_id in sorted(figures.pop("job_ids"))
    ]
    return figures


async def _load(
    client: httpx.AsyncClient, args: argparse.Namespace, deadline: float
) -> dict[str, Any]:
    uploads, upload_wall, study_ids = await upload_all(client, args.uploads)
    submit, submit_wall, polls, jobs_wall, jobs = await run_jobs(
        client, next(iter(study_ids)), args.jobs, deadline
    )
    studies = (await client.get("/api/studies")).json()
    errors = sum(n for t in (uploads, submit, polls) for s, n in t.statuses.items() if s >= 400)
    durations = [
        (
            datetime.fromisoformat(j["finished_at"]) - datetime.fromisoformat(j["started_at"])
        ).total_seconds()
        for j in jobs
    ]
    return {
        "uploads": uploads.summary(upload_wall),
        "job_submissions": submit.summary(submit_wall),
        "job_polls": polls.summary(jobs_wall),
        "jobs": {
            "count": len(jobs),
            "wall_s": round(jobs_wall, 2),
            "jobs_per_s": round(len(jobs) / jobs_wall, 3),
            "run_p50_s": round(float(np.percentile(durations, 50)), 2),
            "run_p99_s": round(float(np.percentile(durations, 99)), 2),
        },
        "checks": {
            "study_stored_once": len(study_ids) == 1
            and len(studies) == 2
            and all(s["series"][0]["instances"] == 20 for s in studies),
            "jobs_all_succeeded_first_attempt": len(jobs) == args.jobs
            and all((j["state"], j["attempts"]) == ("succeeded", 1) for j in jobs),
            "error_responses": errors,
        },
        "job_ids": [j["id"] for j in jobs],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement on SQLite or a throw-away PostgreSQL; returns the result entry."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="medverse-load-") as scratch:
        server = None
        url = None
        if args.postgres:
            from tests.service import postgres

            server = postgres.start_server()
            url = server.create_database()
        try:
            figures = asyncio.run(measure(args, Path(scratch), url))
        finally:
            if server is not None:
                server.stop()
    return {
        "backend": "postgresql" if args.postgres else "sqlite",
        "upload_count": args.uploads,
        "job_count": args.jobs,
        "worker_count": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU used",
        "load_average_before": round(load, 2),  # other work sharing the CPU cores
        "measured_at": datetime.now().isoformat(timespec="seconds"),
        **figures,
    }


def _print(entry: dict[str, Any]) -> None:
    counts = f"{entry['upload_count']} uploads, {entry['job_count']} jobs"
    print(f"backend {entry['backend']}: {counts}, {entry['worker_count']} workers")
    for name in ("uploads", "job_submissions", "job_polls"):
        row = entry[name]
        rate = f"{row['requests']:5d} req {row['requests_per_s']:8.2f} req/s"
        latency = f"p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms"
        print(f"  {name:16} {rate}  {latency}  {row['statuses']}")
    jobs = entry["jobs"]
    rate = f"{jobs['count']} in {jobs['wall_s']} s ({jobs['jobs_per_s']} jobs/s)"
    print(f"  jobs             {rate}, run p50 {jobs['run_p50_s']} s, p99 {jobs['run_p99_s']} s")
    print(f"  checks           {entry['checks']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--uploads", type=int, default=50, help="concurrent CT uploads (50)")
    parser.add_argument("--jobs", type=int, default=20, help="jobs to queue (20)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--deadline", type=float, default=900.0, help="give up after (s)")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    args = parser.parse_args()
    entry = run(args)
    _print(entry)
    if not args.no_save:
        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        saved[entry["backend"]] = entry
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")
        print(f"written to {RESULTS.relative_to(REPO)}")
    checks = entry["checks"]
    ok = checks["error_responses"] == 0 and all(
        v for k, v in checks.items() if k != "error_responses"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
