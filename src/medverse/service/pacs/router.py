"""``/api/pacs/import`` pulls a study from the PACS; ``/api/jobs/{id}/push`` sends its SEG back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any

import pydicom
from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from medverse.service.audit import AuditLog, Outcome
from medverse.service.deps import AuditDep, PrincipalDep, Services, ServicesDep
from medverse.service.dicomweb import (
    SERIES_INSTANCE_UID,
    SOP_INSTANCE_UID,
    DicomWebClient,
    PacsError,
    client_from_settings,
    tag_text,
)
from medverse.service.errors import BadRequestError, ConflictError, NotFoundError
from medverse.service.ingest import IngestResult
from medverse.service.routers.jobs import visible_job
from medverse.service.schemas import ID_PATTERN, UID_PATTERN, ErrorPublic, StudyUploadPublic
from medverse.service.security import Principal, require_role
from medverse.service.storage import is_uid
from medverse.service.study_store import load_study, public_studies
from medverse.service.tables import JobState, Role
from medverse.service.uploads import ReceivedFile
from medverse.service.validate import quiet_pydicom

router = APIRouter(prefix="/api", tags=["pacs"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 403, 404, 409, 502, 503, 504)
}


class PacsImportCreate(BaseModel):
    """A study to pull from the PACS."""

    model_config = ConfigDict(extra="forbid")

    study_instance_uid: str = Field(min_length=1, max_length=64, pattern=UID_PATTERN)


class PacsPushPublic(BaseModel):
    """The DICOM SEG a job sent to the PACS."""

    job_id: str
    study_uid: str
    series_uid: str = Field(description="the SEG's own series")
    sop_instance_uid: str
    referenced_series_uid: str | None = Field(description="the segmented source series")


@dataclass(frozen=True)
class _Header:
    """The UIDs of one DICOM file."""

    sop: str
    series: str
    study: str
    referenced_series: str | None = None


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
    return _upload_public(services, principal, audit, result)


def import_study(services: Services, study_uid: str, *, uploaded_by: str) -> IngestResult:
    """Retrieve one study from the configured PACS and ingest it (all or nothing).

    Raises:
        PacsNotConfiguredError: Without ``MEDVERSE_PACS_URL``.
        NotFoundError: If the PACS has no such study.
        PacsError: If the PACS fails, or sends objects that are missing, foreign or unreadable.
    """
    settings = services.settings
    with client_from_settings(settings) as client, services.storage.staging("pacs") as staging:
        received = staging / "received"
        received.mkdir()
        files = fetch_study(client, study_uid, received, settings.pacs_max_study_bytes)
        try:
            return services.ingestor.ingest_files(files, staging, uploaded_by=uploaded_by)
        except BadRequestError as error:
            raise PacsError(
                f"the PACS sent an object the archive refuses: {error.detail}"
            ) from None


def fetch_study(
    client: DicomWebClient, study_uid: str, folder: FilePath, max_bytes: int
) -> list[ReceivedFile]:
    """QIDO-RS the study's series and instances, WADO-RS each series; check what arrived.

    Raises:
        NotFoundError: If the PACS lists no series for the study.
        PacsError: If an object is unreadable, belongs elsewhere, or a listed one is missing.
    """
    series = [
        _listed_uid(s, SERIES_INSTANCE_UID, "series") for s in client.search_series(study_uid)
    ]
    if not series:
        raise NotFoundError(f"the PACS has no study {study_uid}")
    files: list[ReceivedFile] = []
    used = 0
    for number, series_uid in enumerate(dict.fromkeys(series)):
        listed = {
            _listed_uid(i, SOP_INSTANCE_UID, "instance")
            for i in client.search_instances(study_uid, series_uid)
        }
        target = folder / f"series-{number:04d}"
        target.mkdir()
        paths, size = client.retrieve_series(
            study_uid, series_uid, target, max_bytes=max(max_bytes - used, 1)
        )
        used += size
        arrived: dict[str, FilePath] = {}
        for path in paths:
            header = read_header(path, "the PACS sent an object that is not readable DICOM")
            if (header.study, header.series) != (study_uid, series_uid):
                raise PacsError(f"the PACS sent an object of another series for {series_uid}")
            arrived[header.sop] = path
        if missing := listed - arrived.keys():
            raise PacsError(
                f"the PACS listed {len(listed)} instance(s) of series {series_uid} but sent "
                f"only {len(listed) - len(missing)} of them"
            )
        files += [ReceivedFile(f"PACS object {sop}", path) for sop, path in arrived.items()]
    return files


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
            outcome = client.store([seg], header.study)
        reason = outcome.failed.get(header.sop)
        if reason is not None or (outcome.stored and header.sop not in outcome.stored):
            why = f" (failure reason {reason})" if reason else ""
            raise PacsError(f"the PACS did not store the SEG of job {job_id}{why}")
        entry.detail = "DICOM SEG sent to the PACS"
    return PacsPushPublic(
        job_id=job_id,
        study_uid=header.study,
        series_uid=header.series,
        sop_instance_uid=header.sop,
        referenced_series_uid=header.referenced_series,
    )


def _pushable_seg(services: Services, principal: Principal, job_id: str) -> FilePath:
    job = visible_job(services, principal, job_id)
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


def read_header(path: FilePath, problem: str) -> _Header:
    """The UIDs of a DICOM file (pixel data not read).

    Raises:
        PacsError: With ``problem`` if the file is not readable DICOM or lacks its UIDs.
    """
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        uids = (str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID))
    except Exception:  # pydicom raises many kinds, and its messages may quote patient data
        raise PacsError(problem) from None
    if not all(is_uid(uid) for uid in uids):
        raise PacsError(problem)
    references = ds.get("ReferencedSeriesSequence") or []
    referenced = str(references[0].get("SeriesInstanceUID", "")) if references else ""
    return _Header(*uids, referenced_series=referenced or None)


def _listed_uid(dataset: dict[str, Any], tag: str, kind: str) -> str:
    uid = tag_text(dataset, tag)
    if not is_uid(uid):
        raise PacsError(f"the PACS listed a {kind} without a valid UID")
    return uid


def _upload_public(
    services: Services, principal: Principal, audit: AuditLog, result: IngestResult
) -> StudyUploadPublic:
    if result.deidentified_study_id:
        copy = f"study/{result.deidentified_study_id}"
        audit.record("study.deidentify", copy, Outcome.OK, f"copy of study/{result.study_id}")
    with services.db.reading() as session:
        public = public_studies(session, [load_study(session, result.study_id)], principal)[0]
    return StudyUploadPublic(
        **public.model_dump(),
        instances_added=result.added,
        instances_already_present=result.already_present,
    )
