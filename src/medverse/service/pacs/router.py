"""``/api/pacs/import`` pulls a study from the PACS; ``/api/jobs/{id}/push`` sends its SEG back."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from medverse.service.auth.security import Principal, require_role
from medverse.service.deps import AuditDep, PrincipalDep, Services, ServicesDep
from medverse.service.errors import ConflictError
from medverse.service.jobs.store import visible_job
from medverse.service.pacs.dicomweb import PacsError, client_from_settings
from medverse.service.pacs.importer import import_study, read_header
from medverse.service.pacs.schemas import PacsImportCreate, PacsPushPublic
from medverse.service.schemas import ID_PATTERN, ErrorPublic
from medverse.service.studies.schemas import StudyUploadPublic
from medverse.service.studies.store import load_study, upload_public
from medverse.service.tables import JobState, Role

router = APIRouter(prefix="/api", tags=["pacs"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 403, 404, 409, 502, 503, 504)
}


@router.post(
    "/pacs/import",
    response_model=StudyUploadPublic,
    status_code=201,
    summary="Import a study from the PACS",
    responses={
        **_ERRORS,
        200: {"model": StudyUploadPublic, "description": "every object was already stored"},
    },
)
def import_from_pacs(
    body: PacsImportCreate,
    response: Response,
    services: ServicesDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> StudyUploadPublic:
    """Pull a study over DICOMweb (QIDO-RS, then WADO-RS per series) and store it.

    The objects go through the same checks as an upload (validation, de-identified copy,
    idempotency by SOP Instance UID). 201 when something new was stored, 200 when every
    object was already there; 502/504 when the PACS is unreachable, slow, or answers
    something unusable.
    """
    with audit.action("pacs.import", "pacs/import") as entry:
        require_role(principal, Role.ADMIN, Role.CLINICIAN)
        result = import_study(services, body.study_instance_uid, uploaded_by=principal.name)
        entry.resource = f"study/{result.study_id}"
        entry.detail = (
            f"from the PACS: added {result.added}, already present {result.already_present}"
        )
    response.status_code = 201 if result.added else 200
    return upload_public(services.db, principal, audit, result)


@router.post(
    "/jobs/{job_id}/push",
    response_model=PacsPushPublic,
    summary="Send a job's DICOM SEG to the PACS",
    responses=_ERRORS,
)
def push_to_pacs(
    job_id: Annotated[str, Path(pattern=ID_PATTERN)],
    services: ServicesDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> PacsPushPublic:
    """Store the DICOM SEG of a succeeded job in the PACS (STOW-RS), in the source study.

    Only jobs on identified studies qualify: a de-identified copy's UIDs mean nothing to the
    PACS. Sending the same SEG again is harmless (same SOP Instance UID).
    """
    with audit.action("result.push", f"job/{job_id}/results/seg.dcm") as entry:
        require_role(principal, Role.ADMIN, Role.CLINICIAN)
        seg = _pushable_seg(services, principal, job_id)
        header = read_header(seg, "the stored SEG is unreadable")
        with client_from_settings(services.settings) as client:
            outcome = client.store([seg], header.study_instance_uid)
        sop = header.sop_instance_uid
        reason = outcome.failed.get(sop)
        if reason is not None or (outcome.stored and sop not in outcome.stored):
            why = f" (failure reason {reason})" if reason else ""
            raise PacsError(f"the PACS did not store the SEG of job {job_id}{why}")
        entry.detail = "DICOM SEG sent to the PACS"
    return PacsPushPublic(
        job_id=job_id,
        study_uid=header.study_instance_uid,
        series_uid=header.series_instance_uid,
        sop_instance_uid=header.sop_instance_uid,
        referenced_series_uid=header.referenced_series_uid or None,
    )


def _pushable_seg(services: Services, principal: Principal, job_id: str) -> FilePath:
    job = visible_job(services.db, principal, job_id)
    if job.state != JobState.SUCCEEDED.value:
        raise ConflictError(f"job {job_id} is {job.state}; only a succeeded job can be pushed")
    with services.db.reading() as session:
        identified = load_study(session, job.study_id).identified
    if not identified:
        raise ConflictError(
            f"job {job_id} segmented a de-identified copy, whose UIDs the PACS does not know; "
            "run the job on the identified study to push its SEG"
        )
    seg = services.storage.results_dir(job_id) / "seg.dcm"
    if not seg.is_file():
        raise ConflictError(
            f"job {job_id} wrote no seg.dcm (the input was not DICOM or no structure was "
            "found); nothing to push"
        )
    return seg
