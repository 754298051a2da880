"""The job queue in the database: create, claim atomically, renew leases, finish, re-queue."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Result, Update, func, select, update
from sqlalchemy.exc import IntegrityError

from medverse.service.auth.security import Principal
from medverse.service.db import Database
from medverse.service.errors import ConflictError, NotFoundError
from medverse.service.jobs.schemas import JobPublic, ResultName
from medverse.service.storage import Storage
from medverse.service.studies.store import check_access, load_study
from medverse.service.tables import Job, JobState, Study, utcnow

_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class ClaimedJob:
    """A job one worker holds the lease on (plain data, no session attached).

    Attributes:
        id: The job id.
        study_id: The study to read.
        series_uid: The series asked for (None: the study's only image series).
        model: The model name.
        attempt: Which run this is (1 for the first).
        worker_id: The worker holding the lease.
        started_at: When this run started.
    """

    id: str
    study_id: str
    series_uid: str | None
    model: str
    attempt: int
    worker_id: str
    started_at: datetime


def create_job(
    db: Database, *, study_id: str, series_uid: str | None, model: str, created_by: str
) -> Job:
    """Queue a job and return it.

    Raises:
        NotFoundError: If the study does not exist (any more).
    """
    job = Job(
        id=str(uuid.uuid4()),
        study_id=study_id,
        series_uid=series_uid,
        model=model,
        state=JobState.QUEUED.value,
        progress=0.0,
        attempts=0,
        created_by=created_by,
    )
    try:
        with db.writing() as session:
            session.add(job)
    except IntegrityError:  # the study was deleted meanwhile
        raise NotFoundError(f"no study {study_id}") from None
    return job


def load_job(db: Database, job_id: str) -> Job:
    """Return a job.

    Raises:
        NotFoundError: If there is no such job.
    """
    with db.reading() as session:
        job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def visible_job(db: Database, principal: Principal, job_id: str) -> Job:
    """A job whose study ``principal`` may see.

    Raises:
        NotFoundError: If there is no such job.
        ForbiddenError: If the job is on an identified study and the caller is a researcher.
    """
    job = load_job(db, job_id)
    with db.reading() as session:
        check_access(principal, load_study(session, job.study_id))
    return job


def list_jobs(
    db: Database,
    principal: Principal,
    *,
    study_id: str | None = None,
    state: JobState | None = None,
    limit: int = 100,
) -> list[Job]:
    """Jobs ``principal`` may see, newest first, optionally of one study or in one state.

    Researchers see jobs on de-identified studies only.
    """
    query = select(Job).join(Study, Study.id == Job.study_id)
    if not principal.can_see_identified():
        query = query.where(Study.identified.is_(False))
    if study_id is not None:
        query = query.where(Job.study_id == study_id)
    if state is not None:
        query = query.where(Job.state == state.value)
    query = query.order_by(Job.created_at.desc(), Job.id).limit(limit)
    with db.reading() as session:
        return list(session.scalars(query))


def claim_next(db: Database, worker_id: str, lease_seconds: float) -> ClaimedJob | None:
    """Take the oldest queued job, or return None; no two callers ever get the same job.

    PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` then an update of that row. SQLite: one
    conditional ``UPDATE ... WHERE state = 'queued' RETURNING`` inside ``BEGIN IMMEDIATE``.
    """
    now = utcnow()
    oldest = (
        select(Job.id)
        .where(Job.state == JobState.QUEUED.value)
        .order_by(Job.created_at, Job.id)
        .limit(1)
    )
    claim = (
        update(Job)
        .where(Job.state == JobState.QUEUED.value)
        .values(
            state=JobState.RUNNING.value,
            worker_id=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=Job.attempts + 1,
            started_at=now,
            progress=0.0,
        )
        .returning(Job.id, Job.study_id, Job.series_uid, Job.model, Job.attempts)
        .execution_options(synchronize_session=False)
    )
    with db.writing() as session:
        if db.is_sqlite:
            row = session.execute(claim.where(Job.id == oldest.scalar_subquery())).first()
        else:
            job_id = session.scalar(oldest.with_for_update(skip_locked=True))
            row = None if job_id is None else session.execute(claim.where(Job.id == job_id)).first()
    if row is None:
        return None
    return ClaimedJob(row.id, row.study_id, row.series_uid, row.model, row.attempts, worker_id, now)


def renew_lease(
    db: Database, job: ClaimedJob, lease_seconds: float, progress: float | None = None
) -> bool:
    """Extend the lease (and record progress); False if the job is no longer this worker's."""
    values: dict[str, object] = {"lease_expires_at": utcnow() + timedelta(seconds=lease_seconds)}
    if progress is not None:
        values["progress"] = min(max(progress, 0.0), 1.0)
    with db.writing() as session:
        result = session.execute(_mine(job).values(**values))
    return _rowcount(result) == 1


def complete(db: Database, job: ClaimedJob, publish: Callable[[], object]) -> bool:
    """Mark the job succeeded and publish its results in the same transaction.

    ``publish`` runs only if the job is still this worker's (not cancelled, not re-queued);
    if it raises, the job stays running and is retried later.

    Returns:
        False if the job was no longer this worker's (nothing published).
    """
    now = utcnow()
    with db.writing() as session:
        result = session.execute(
            _mine(job).values(
                state=JobState.SUCCEEDED.value,
                progress=1.0,
                finished_at=now,
                duration_seconds=(now - job.started_at).total_seconds(),
                lease_expires_at=None,
                error=None,
            )
        )
        if _rowcount(result) != 1:
            return False
        publish()
    return True


def fail_attempt(
    db: Database, job: ClaimedJob, error: str, *, retry: bool, max_attempts: int
) -> JobState | None:
    """End this worker's run with an error: re-queue it (if ``retry`` and runs are left) or fail.

    Returns:
        The job's new state, or None if it was no longer this worker's.
    """
    with db.writing() as session:
        row = session.get(Job, job.id, with_for_update=True)
        if row is None or row.state != JobState.RUNNING.value or row.worker_id != job.worker_id:
            return None
        row.worker_id, row.lease_expires_at = None, None
        if retry and row.attempts < max_attempts:
            row.state = JobState.QUEUED.value
            row.error = f"attempt {row.attempts} failed ({error}); re-queued"
        else:
            row.state = JobState.FAILED.value
            row.error = error if not retry else f"failed after {row.attempts} attempt(s): {error}"
            row.finished_at = utcnow()
        return JobState(row.state)


def cancel_job(db: Database, job_id: str) -> Job:
    """Cancel a queued or running job (a running one's worker drops its work at its next step).

    Raises:
        NotFoundError: If there is no such job.
        ConflictError: If it has already finished.
    """
    with db.writing() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        if job.state not in _ACTIVE:
            raise ConflictError(f"job {job_id} has already {job.state}; nothing to cancel")
        job.state = JobState.CANCELLED.value
        job.finished_at = utcnow()
        job.lease_expires_at = None
        job.worker_id = None
    return job


def requeue_expired(db: Database, max_attempts: int) -> tuple[int, int]:
    """Re-queue running jobs whose worker stopped renewing its lease; fail those out of runs.

    Returns:
        (re-queued, failed) counts.
    """
    now = utcnow()
    query = select(Job).where(Job.state == JobState.RUNNING.value, Job.lease_expires_at < now)
    requeued = failed = 0
    with db.writing() as session:
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        for job in session.scalars(query):
            lost = f"worker {job.worker_id} stopped renewing its lease (lost or killed)"
            job.worker_id, job.lease_expires_at = None, None
            if job.attempts >= max_attempts:
                job.state, job.finished_at = JobState.FAILED.value, now
                job.error = f"failed after {job.attempts} attempt(s): {lost}"
                failed += 1
            else:
                job.state = JobState.QUEUED.value
                job.error = f"attempt {job.attempts}: {lost}; re-queued"
                requeued += 1
    return requeued, failed


def counts_by_state(db: Database) -> dict[JobState, int]:
    """How many jobs are in each state (every state listed, zero included)."""
    with db.reading() as session:
        rows = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    return {state: int(rows.get(state.value, 0)) for state in JobState}


def job_public(job: Job, storage: Storage) -> JobPublic:
    """The API view of a job; ``results`` lists the files a succeeded job has."""
    results: list[ResultName] = []
    state = JobState(job.state)
    if job.state == JobState.SUCCEEDED.value:
        folder = storage.results_dir(job.id)
        results = [name for name in ResultName if (folder / name.value).is_file()]
    return JobPublic(
        id=job.id,
        study_id=job.study_id,
        series_uid=job.series_uid,
        model=job.model,
        state=state,
        progress=job.progress,
        error=job.error,
        attempts=job.attempts,
        retrying=job.attempts > 1 or (state == JobState.QUEUED and job.attempts > 0),
        worker_lost=state == JobState.RUNNING
        and job.lease_expires_at is not None
        and _aware(job.lease_expires_at) < _aware(utcnow()),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        created_by=job.created_by,
        results=results,
    )


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE matched (``Session.execute`` returns a ``CursorResult`` for DML)."""
    return int(getattr(result, "rowcount", 0))


def _mine(job: ClaimedJob) -> Update:
    """An UPDATE of ``job`` that matches only while this worker still runs it."""
    return (
        update(Job)
        .where(
            Job.id == job.id,
            Job.worker_id == job.worker_id,
            Job.state == JobState.RUNNING.value,
        )
        .execution_options(synchronize_session=False)
    )


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back; they were stored as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
