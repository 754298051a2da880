"""``/api/studies``: upload (DICOM files, a zip, or NIfTI), list, show, delete; all audited."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from medverse.service.audit.store import AuditLog
from medverse.service.auth.security import Principal, require_role
from medverse.service.deps import AuditDep, PrincipalDep, Services, ServicesDep
from medverse.service.schemas import ID_PATTERN, ErrorPublic
from medverse.service.studies.schemas import StudyDeletedPublic, StudyPublic, StudyUploadPublic
from medverse.service.studies.store import (
    check_access,
    delete_study,
    list_studies,
    load_study,
    public_studies,
    upload_public,
)
from medverse.service.studies.uploads import ReceivedFile, receive_files
from medverse.service.tables import Role

router = APIRouter(prefix="/api/studies", tags=["studies"])
StudyId = Annotated[str, Path(pattern=ID_PATTERN)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 403, 404)
}
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "DICOM files, zip archives of them, or one NIfTI image",
                    }
                },
                "required": ["files"],
            }
        }
    },
}


@router.post(
    "",
    response_model=StudyUploadPublic,
    status_code=201,
    summary="Upload a study",
    responses={
        **_ERRORS,
        200: {"model": StudyUploadPublic, "description": "every object was already stored"},
        409: {"model": ErrorPublic},
        413: {"model": ErrorPublic},
    },
    openapi_extra={"requestBody": _UPLOAD_BODY},
)
async def upload_study(
    request: Request,
    response: Response,
    services: ServicesDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> StudyUploadPublic:
    """Store DICOM objects (files or zips) of one study, or one NIfTI image.

    Answers 201 when something new was stored, 200 when every object was already there.
    An identified DICOM study also gets a de-identified copy (``deidentified_study_id``).
    """
    with services.storage.staging("upload") as staging:
        try:
            require_role(principal, Role.ADMIN, Role.CLINICIAN)
            received = staging / "received"
            received.mkdir()
            files = await receive_files(request, received, services.settings.max_upload_bytes)
        except Exception as error:
            await run_in_threadpool(audit.refused, "study.upload", "studies", error)
            raise
        result = await run_in_threadpool(_ingest, services, principal, audit, files, staging)
    response.status_code = 201 if result.instances_added else 200
    return result


def _ingest(
    services: Services,
    principal: Principal,
    audit: AuditLog,
    files: list[ReceivedFile],
    staging: FilePath,
) -> StudyUploadPublic:
    with audit.action("study.upload", "studies") as entry:
        result = services.ingestor.ingest_files(files, staging, uploaded_by=principal.name)
        entry.resource = f"study/{result.study_id}"
        entry.detail = f"added {result.added}, already present {result.already_present}"
    return upload_public(services.db, principal, audit, result)


@router.get("", response_model=list[StudyPublic], responses=_ERRORS, summary="List studies")
# HEAD answers like GET without a body; kept out of the schema (one operation id per route).
@router.api_route("", methods=["HEAD"], response_model=list[StudyPublic], include_in_schema=False)
def get_studies(
    services: ServicesDep,
    principal: PrincipalDep,
    audit: AuditDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[StudyPublic]:
    """The studies you may see, newest first (researchers: de-identified ones only)."""
    with audit.action("study.list", "studies") as entry:
        studies = list_studies(services.db, principal, limit=limit, offset=offset)
        entry.detail = f"{len(studies)} studies"
    return studies


@router.get("/{study_id}", response_model=StudyPublic, responses=_ERRORS, summary="Show a study")
def get_study(
    study_id: StudyId, services: ServicesDep, principal: PrincipalDep, audit: AuditDep
) -> StudyPublic:
    """One study with its series (403 for a researcher on an identified study)."""
    with audit.action("study.read", f"study/{study_id}"), services.db.reading() as session:
        study = load_study(session, study_id)
        check_access(principal, study)
        return public_studies(session, [study], principal)[0]


@router.delete(
    "/{study_id}", response_model=StudyDeletedPublic, responses=_ERRORS, summary="Delete a study"
)
def remove_study(
    study_id: StudyId, services: ServicesDep, principal: PrincipalDep, audit: AuditDep
) -> StudyDeletedPublic:
    """Delete a study, its de-identified copies, their jobs and results (admins only)."""
    with audit.action("study.delete", f"study/{study_id}") as entry:
        require_role(principal, Role.ADMIN)
        deleted = delete_study(services.db, services.storage, study_id)
        entry.detail = f"deleted {len(deleted)} study record(s)"
    return StudyDeletedPublic(deleted_study_ids=deleted)
