"""Workers: claim a job, hold its lease with heartbeats, run it, publish results exactly once."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from medverse.core.errors import MedverseError
from medverse.core.logging import get_logger
from medverse.core.settings import Settings
from medverse.service.db import Database
from medverse.service.jobs.runner import segment_for_job
from medverse.service.jobs.store import (
    ClaimedJob,
    claim_next,
    complete,
    fail_attempt,
    renew_lease,
    requeue_expired,
)
from medverse.service.models.catalog import ModelCatalog
from medverse.service.storage import Storage
from medverse.service.studies.store import load_study, segmentation_input
from medverse.service.tables import Job

_LOG = get_logger(__name__)


class JobLostError(Exception):
    """The job was cancelled or re-queued while this worker ran it: drop the work."""


def new_worker_id() -> str:
    """``host:pid:random``, unique per worker."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _Lease:
    """Renews a job's lease on a thread and records progress; notices when it is lost."""

    def __init__(self, db: Database, job: ClaimedJob, settings: Settings) -> None:
        self.db, self.job = db, job
        self.lease_seconds = settings.lease_seconds
        self.interval = settings.heartbeat_seconds
        self.progress = 0.0
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job.id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def step(self, progress: float) -> None:
        """Record progress now; raise JobLostError if the job is no longer ours."""
        self.progress = progress
        self._renew()
        if self.lost.is_set():
            raise JobLostError(self.job.id)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._renew()

    def _renew(self) -> None:
        try:
            if not renew_lease(self.db, self.job, self.lease_seconds, self.progress):
                self.lost.set()
        except Exception as error:  # a database hiccup: try again at the next beat
            _LOG.warning("job %s: lease renewal failed (%s)", self.job.id, type(error).__name__)


@dataclass
class Worker:
    """Runs queued jobs one at a time.

    Attributes:
        settings: Device, lease, retry and polling settings.
        db: The service database.
        storage: The data-dir layout.
        catalog: The models folder.
        worker_id: This worker's id (recorded on the jobs it claims).
    """

    settings: Settings
    db: Database
    storage: Storage
    catalog: ModelCatalog
    worker_id: str = ""

    def __post_init__(self) -> None:
        self.worker_id = self.worker_id or new_worker_id()

    def run_once(self) -> bool:
        """Re-queue expired leases, then claim and run one job; False if none was queued."""
        requeue_expired(self.db, self.settings.max_attempts)
        job = claim_next(self.db, self.worker_id, self.settings.lease_seconds)
        if job is None:
            return False
        self.run(job)
        return True

    def run_forever(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; sleep ``poll_seconds`` whenever the queue is empty."""
        _LOG.info("worker %s started", self.worker_id)
        while not stop.is_set():
            try:
                worked = self.run_once()
            except Exception as error:  # the database may be briefly away: keep going
                _LOG.error("worker %s: %s; retrying", self.worker_id, type(error).__name__)
                worked = False
            if not worked:
                stop.wait(self.settings.poll_seconds)
        _LOG.info("worker %s stopped", self.worker_id)

    def run(self, job: ClaimedJob) -> None:
        """Run one claimed job to its end: succeeded, failed, re-queued, or dropped if lost."""
        _LOG.info("job %s: attempt %d on %s", job.id, job.attempt, self.worker_id)
        try:
            with (
                _Lease(self.db, job, self.settings) as lease,
                self.storage.staging(f"job-{job.id}") as scratch,
            ):
                self._segment(job, scratch / "results", lease)
                published = complete(
                    self.db,
                    job,
                    lambda: self.storage.publish_results(scratch / "results", job.id),
                )
            _LOG.info("job %s: %s", job.id, "succeeded" if published else "dropped (not ours)")
        except JobLostError:
            _LOG.info("job %s: cancelled or re-queued elsewhere; work dropped", job.id)
        except MedverseError as error:  # bad input or model: running it again will not help
            self._fail(job, self.storage.redact(error.one_line()), retry=False)
        except Exception as error:
            text = self.storage.redact(" ".join(f"{type(error).__name__}: {error}".split()))
            self._fail(job, text[:400], retry=True)

    def _segment(self, job: ClaimedJob, out_dir: Path, lease: _Lease) -> None:
        with self.db.reading() as session:
            if session.scalar(select(Job.id).where(Job.id == job.id)) is None:
                raise JobLostError(job.id)
            chosen = segmentation_input(load_study(session, job.study_id), job.series_uid)
        segment_for_job(
            self.storage.absolute(chosen.path),
            chosen.series_uid,  # a stand-in UID is the scan's key too (one rule in io/dicom)
            self.catalog.path(job.model),
            out_dir,
            device=str(self.settings.device),
            step=lease.step,
        )

    def _fail(self, job: ClaimedJob, error: str, *, retry: bool) -> None:
        state = fail_attempt(
            self.db, job, error, retry=retry, max_attempts=self.settings.max_attempts
        )
        _LOG.warning("job %s: attempt %d failed -> %s", job.id, job.attempt, state or "lost")


class WorkerThread:
    """A worker on a daemon thread inside the API process (``medverse serve``).

    Args:
        worker: The worker to run.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=worker.run_forever, args=(self.stop_event,), name="medverse-worker", daemon=True
        )

    def start(self) -> None:
        """Start working."""
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to stop after its current job and wait up to ``timeout`` seconds.

        A job still running after that keeps its lease until the process exits; the lease
        then expires and the job is re-queued.
        """
        self.stop_event.set()
        self.thread.join(timeout)
