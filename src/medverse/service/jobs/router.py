"""``/api/jobs``: queue a segmentation, follow it, list, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medverse.inference.checks import modality_problem
from medverse.service.deps import AuditDep, PrincipalDep, ServicesDep
from medverse.service.errors import BadRequestError, ForbiddenError
from medverse.service.jobs.schemas import JobCreate, JobPublic
from medverse.service.jobs.store import (
    cancel_job,
    create_job,
    job_public,
    list_jobs,
    visible_job,
)
from medverse.service.schemas import ID_PATTERN, ErrorPublic
from medverse.service.studies.store import check_access, load_study, segmentation_input
from medverse.service.tables import JobState, Role

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
JobId = Annotated[str, Path(pattern=ID_PATTERN)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 403, 404)
}


@router.post(
    "", response_model=JobPublic, status_code=202, responses=_ERRORS, summary="Queue a job"
)
def post_job(
    body: JobCreate, services: ServicesDep, principal: PrincipalDep, audit: AuditDep
) -> JobPublic:
    """Queue a segmentation of one series of a study with a model; follow it by its id."""
    with audit.action("job.create", f"study/{body.study_id}") as entry:
        with services.db.reading() as session:
            study = load_study(session, body.study_id)
            check_access(principal, study)
            chosen = segmentation_input(study, body.series_uid)
        model = services.catalog.get(body.model)
        problem = modality_problem(chosen.recorded_modality, model.modality)
        if problem is not None:
            raise BadRequestError(f"model {model.name!r}: {problem}")
        job = create_job(
            services.db,
            study_id=body.study_id,
            series_uid=chosen.series_uid,
            model=body.model,
            created_by=principal.name,
        )
        entry.resource = f"job/{job.id}"
        entry.detail = f"study/{body.study_id} with model {body.model}"
    return job_public(job, services.storage)


@router.get("", response_model=list[JobPublic], responses=_ERRORS, summary="List jobs")
def get_jobs(
    services: ServicesDep,
    principal: PrincipalDep,
    study_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[JobPublic]:
    """Jobs, newest first, optionally of one study or in one state.

    Researchers see jobs on de-identified studies only.
    """
    jobs = list_jobs(services.db, principal, study_id=study_id, state=state, limit=limit)
    return [job_public(job, services.storage) for job in jobs]


@router.get("/{job_id}", response_model=JobPublic, responses=_ERRORS, summary="Show a job")
def get_job(
    job_id: JobId, services: ServicesDep, principal: PrincipalDep, audit: AuditDep
) -> JobPublic:
    """A job's state, progress, error and result names."""
    with audit.action("job.read", f"job/{job_id}", record_ok=False):
        job = visible_job(services.db, principal, job_id)
    return job_public(job, services.storage)


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses={**_ERRORS, 409: {"model": ErrorPublic}},
    summary="Cancel a job",
)
def post_cancel(
    job_id: JobId, services: ServicesDep, principal: PrincipalDep, audit: AuditDep
) -> JobPublic:
    """Cancel a queued or running job (admins, or the user who queued it)."""
    with audit.action("job.cancel", f"job/{job_id}"):
        job = visible_job(services.db, principal, job_id)
        if job.created_by != principal.name and principal.role != Role.ADMIN:
            raise ForbiddenError(
                f"job {job_id} was queued by {job.created_by}: only they or an admin may cancel it"
            )
        job = cancel_job(services.db, job_id)
    return job_public(job, services.storage)
