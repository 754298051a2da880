"""``/api/jobs/{id}/results/{name}``: download one file of a finished job (audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from medverse.service.deps import AuditDep, PrincipalDep, ServicesDep
from medverse.service.errors import ConflictError, NotFoundError
from medverse.service.jobs.schemas import ResultName
from medverse.service.jobs.store import visible_job
from medverse.service.schemas import ID_PATTERN, ErrorPublic
from medverse.service.tables import JobState

router = APIRouter(prefix="/api/jobs", tags=["results"])
MEDIA_TYPES = {
    ResultName.LABELS: "application/gzip",
    ResultName.SEG: "application/dicom",
    ResultName.MESHES: "model/gltf-binary",
    ResultName.REPORT: "application/json",
    ResultName.OVERVIEW: "image/png",
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the file",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in sorted(set(MEDIA_TYPES.values()))
        },
    },
    **{code: {"model": ErrorPublic} for code in (401, 403, 404, 409)},
}


@router.get(
    "/{job_id}/results/{name}",
    response_model=None,
    response_class=FileResponse,
    responses=_RESPONSES,
    summary="Download a result file",
)
def get_result(
    job_id: Annotated[str, Path(pattern=ID_PATTERN)],
    name: ResultName,
    services: ServicesDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> FileResponse:
    """One file of a succeeded job: labels, DICOM SEG, meshes, report or overview."""
    with audit.action("result.read", f"job/{job_id}/results/{name.value}"):
        job = visible_job(services.db, principal, job_id)
        if job.state != JobState.SUCCEEDED.value:
            raise ConflictError(f"job {job_id} is {job.state}; results exist once it has succeeded")
        path = services.storage.results_dir(job_id) / name.value
        if not path.is_file():
            why = (
                "no structure was found"
                if name != ResultName.SEG
                else ("the input was not DICOM or no structure was found")
            )
            raise NotFoundError(f"job {job_id} wrote no {name.value} ({why})")
    filename = f"{job_id}-{name.value}"
    return FileResponse(path, media_type=MEDIA_TYPES[name], filename=filename)
