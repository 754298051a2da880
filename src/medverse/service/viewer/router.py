"""``/api/viewer``: what the browser viewer loads besides job results (image as NIfTI, colours)."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from medverse.core.registry import label_color
from medverse.service.deps import AuditDep, PrincipalDep, Services, ServicesDep
from medverse.service.errors import ConflictError, NotFoundError
from medverse.service.jobs.store import visible_job
from medverse.service.schemas import ID_PATTERN, UID_PATTERN, ErrorPublic
from medverse.service.studies.store import check_access, load_study, segmentation_input
from medverse.service.tables import JobState
from medverse.service.viewer.schemas import LabelPublic, LabelTablePublic

router = APIRouter(prefix="/api/viewer", tags=["viewer"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 403, 404, 409)
}
CACHE_FOLDER = "viewer"


@router.get(
    "/studies/{study_id}/image.nii.gz",
    response_model=None,
    response_class=FileResponse,
    responses={200: {"content": {"application/gzip": {}}}, **_ERRORS},
    summary="A study's image as NIfTI",
)
def get_image(
    study_id: Annotated[str, Path(pattern=ID_PATTERN)],
    services: ServicesDep,
    audit: AuditDep,
    series_uid: Annotated[str | None, Query(pattern=UID_PATTERN, max_length=64)] = None,
) -> FileResponse:
    """One image series of a study as gzipped NIfTI (converted once, then cached)."""
    with audit.action("viewer.image", f"study/{study_id}"):
        with services.db.reading() as session:
            study = load_study(session, study_id)
            check_access(audit.principal, study)
            chosen = segmentation_input(study, series_uid)
        path = _nifti_of(services, study_id, chosen.path, chosen.series_uid)
    return FileResponse(path, media_type="application/gzip", filename="image.nii.gz")


def _nifti_of(services: Services, study_id: str, relative: str, series_uid: str | None) -> FilePath:
    source = services.storage.absolute(relative)
    if series_uid is None:  # a NIfTI study is served as stored
        return source
    target = services.storage.study_dir(study_id) / CACHE_FOLDER / f"{series_uid}.nii.gz"
    if not target.is_file():
        from medverse.io.dicom import read_image
        from medverse.io.nifti import write_nifti

        # The folder holds exactly this series (files without a Series Instance UID are
        # stored under a generated one), so it is read whole.
        write_nifti(read_image(source), target)
    return target


@router.get(
    "/jobs/{job_id}/labels",
    response_model=LabelTablePublic,
    responses=_ERRORS,
    summary="A job's label colour table",
)
def get_labels(
    job_id: Annotated[str, Path(pattern=ID_PATTERN)],
    services: ServicesDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> LabelTablePublic:
    """The structures a succeeded job found, with registry names, colours and volumes."""
    from medverse.inference.report import read_report

    with audit.action("viewer.labels", f"job/{job_id}"):
        job = visible_job(services.db, principal, job_id)
        if job.state != JobState.SUCCEEDED.value:
            raise ConflictError(f"job {job_id} is {job.state}; labels exist once it has succeeded")
        path = services.storage.results_dir(job_id) / "report.json"
        if not path.is_file():
            raise NotFoundError(f"job {job_id} wrote no report.json")
        report = read_report(path)
    structures = [
        LabelPublic(
            value=s.value,
            name=s.name,
            color=label_color(s.value, s.name),
            volume_ml=s.volume_ml,
            centroid_mm=s.centroid_mm,
        )
        for s in report.structures
    ]
    return LabelTablePublic(job_id=job_id, model=job.model, structures=structures)
