"""The job queue under concurrency and failure: exclusive claims, leases, retries, restarts."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from medverse.core.settings import Settings
from medverse.service.audit.store import AuditLog, Outcome
from medverse.service.auth.security import Principal
from medverse.service.db import Database
from medverse.service.jobs.store import (
    ClaimedJob,
    cancel_job,
    claim_next,
    complete,
    create_job,
    fail_attempt,
    load_job,
    renew_lease,
    requeue_expired,
)
from medverse.service.tables import Job, JobState, Role, utcnow
from tests.service.conftest import insert_study, open_api


def _jobs(db: Database, count: int) -> list[str]:
    study_id = insert_study(db)
    return [
        create_job(db, study_id=study_id, series_uid=None, model="m", created_by="test").id
        for _ in range(count)
    ]


def _expire(db: Database, job_id: str) -> None:
    with db.writing() as session:
        past = utcnow() - timedelta(seconds=1)
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))


def test_concurrent_workers_never_claim_the_same_job(db: Database) -> None:
    expected = set(_jobs(db, 24))
    claims: dict[str, list[str]] = {}
    start = threading.Barrier(6)

    def work(worker: str) -> None:
        start.wait()
        mine = claims.setdefault(worker, [])
        while (job := claim_next(db, worker, lease_seconds=30)) is not None:
            mine.append(job.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    claimed = [job for jobs in claims.values() for job in jobs]
    assert sorted(claimed) == sorted(expected)  # every job once, none twice
    assert sum(1 for jobs in claims.values() if jobs) >= 2  # the claims really interleaved
    assert {load_job(db, j).state for j in expected} == {JobState.RUNNING.value}


def test_a_restart_requeues_a_running_job_whose_lease_expired(
    settings: Settings, db: Database
) -> None:
    (stale,) = _jobs(db, 1)
    claimed = claim_next(db, "dead-worker", lease_seconds=30)
    assert claimed is not None and claimed.id == stale
    (alive,) = _jobs(db, 1)
    assert claim_next(db, "live-worker", lease_seconds=300) is not None
    _expire(db, stale)

    for _api in open_api(settings, db, run_worker=False):  # start-up of a new service
        requeued, kept = load_job(db, stale), load_job(db, alive)
        assert (requeued.state, requeued.worker_id, requeued.attempts) == ("queued", None, 1)
        assert "dead-worker stopped renewing its lease" in (requeued.error or "")
        assert (kept.state, kept.worker_id) == ("running", "live-worker")


def test_a_job_whose_worker_keeps_dying_is_retried_then_failed_with_the_reason(
    db: Database,
) -> None:
    (job_id,) = _jobs(db, 1)
    for attempt in (1, 2):
        claimed = claim_next(db, f"doomed-{attempt}", lease_seconds=30)
        assert claimed is not None and claimed.attempt == attempt
        _expire(db, job_id)
        requeue_expired(db, max_attempts=2)

    job = load_job(db, job_id)
    assert job.state == JobState.FAILED.value
    assert job.error == (
        "failed after 2 attempt(s): worker doomed-2 stopped renewing its lease (lost or killed)"
    )
    assert claim_next(db, "another", lease_seconds=30) is None


def test_crash_errors_are_retried_but_bad_input_fails_at_once(db: Database) -> None:
    first, second = _jobs(db, 2)
    a = claim_next(db, "w", lease_seconds=30)
    assert a is not None and a.id == first
    assert fail_attempt(db, a, "OSError: disk", retry=True, max_attempts=2) == JobState.QUEUED
    b = claim_next(db, "w", lease_seconds=30)
    assert b is not None and b.id == first and b.attempt == 2
    assert fail_attempt(db, b, "OSError: disk", retry=True, max_attempts=2) == JobState.FAILED
    c = claim_next(db, "w", lease_seconds=30)
    assert c is not None and c.id == second
    assert fail_attempt(db, c, "x.dcm: bad", retry=False, max_attempts=2) == JobState.FAILED
    assert load_job(db, second).error == "x.dcm: bad"


def test_a_worker_that_lost_its_job_publishes_nothing(db: Database, tmp_path: Path) -> None:
    (job_id,) = _jobs(db, 1)
    slow = claim_next(db, "slow", lease_seconds=30)
    assert slow is not None
    _expire(db, job_id)
    requeue_expired(db, max_attempts=3)
    fast = claim_next(db, "fast", lease_seconds=30)
    assert fast is not None and fast.id == job_id
    published: list[str] = []

    assert renew_lease(db, slow, 30) is False
    assert complete(db, slow, lambda: published.append("slow")) is False
    assert complete(db, fast, lambda: published.append("fast")) is True
    assert published == ["fast"]
    assert load_job(db, job_id).state == JobState.SUCCEEDED.value


def test_cancelling_a_running_job_takes_it_from_its_worker(db: Database) -> None:
    (job_id,) = _jobs(db, 1)
    claimed = claim_next(db, "w", lease_seconds=30)
    assert isinstance(claimed, ClaimedJob)

    cancel_job(db, job_id)

    assert renew_lease(db, claimed, 30, progress=0.5) is False
    assert complete(db, claimed, lambda: None) is False
    assert load_job(db, job_id).state == JobState.CANCELLED.value


def test_the_audit_log_is_append_only(db: Database) -> None:
    AuditLog(db, Principal("ann", Role.ADMIN), "127.0.0.1").record(
        "study.read", "study/x", Outcome.OK
    )

    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), db.writing() as session:
            session.execute(text(statement))
    with db.reading() as session:
        assert session.execute(text("SELECT actor FROM audit_events")).scalars().all() == ["ann"]
