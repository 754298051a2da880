"""Stored studies: find, show, check who may see them, choose the series to segment, delete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from medverse.service.audit.store import AuditLog, Outcome
from medverse.service.auth.security import Principal
from medverse.service.db import Database
from medverse.service.errors import BadRequestError, HiddenError, NotFoundError
from medverse.service.storage import Storage
from medverse.service.studies.ingest import NIFTI_SERIES_MODALITY, IngestResult
from medverse.service.studies.schemas import SeriesPublic, StudyPublic, StudyUploadPublic
from medverse.service.tables import Instance, Job, Series, Study, StudyKind


@dataclass(frozen=True)
class SegmentationInput:
    """What a job reads: a DICOM series folder (with its UID) or a NIfTI file.

    Attributes:
        path: The folder or file, relative to the data dir.
        series_uid: The series to read from a DICOM folder (None for NIfTI).
        modality: The series' modality ("NIFTI" for NIfTI).
    """

    path: str
    series_uid: str | None
    modality: str

    @property
    def recorded_modality(self) -> str | None:
        """The modality the image itself records (None for NIfTI, which records none)."""
        return None if self.modality == NIFTI_SERIES_MODALITY else self.modality or None


def load_study(session: Session, study_id: str) -> Study:
    """Return a study with its series.

    Raises:
        NotFoundError: If there is no such study.
    """
    study = session.scalar(
        select(Study).where(Study.id == study_id).options(selectinload(Study.series))
    )
    if study is None:
        raise NotFoundError(f"no study {study_id}")
    return study


def check_access(principal: Principal, study: Study) -> None:
    """Refuse an identified study to a researcher, answering as if it did not exist.

    Raises:
        HiddenError: If ``principal`` may only see de-identified studies and this one is not
            (404 with the missing study's words; audited as denied).
    """
    if study.identified and not principal.can_see_identified():
        raise HiddenError(f"no study {study.id}")


def list_studies(
    db: Database, principal: Principal, *, limit: int, offset: int
) -> list[StudyPublic]:
    """The studies ``principal`` may see, newest first (researchers: de-identified only)."""
    query = select(Study).options(selectinload(Study.series))
    if not principal.can_see_identified():
        query = query.where(Study.identified.is_(False))
    query = query.order_by(Study.created_at.desc(), Study.id).limit(limit).offset(offset)
    with db.reading() as session:
        studies = list(session.scalars(query))
        return public_studies(session, studies, principal)


def public_studies(
    session: Session, studies: Sequence[Study], principal: Principal
) -> list[StudyPublic]:
    """The API view of ``studies`` (instance counts and copies looked up in two queries)."""
    ids = [s.id for s in studies]
    counts = dict(
        session.execute(
            select(Instance.series_id, func.count())
            .where(Instance.study_id.in_(ids))
            .group_by(Instance.series_id)
        ).all()
    )
    copies = dict(
        session.execute(
            select(Study.source_study_id, Study.id).where(Study.source_study_id.in_(ids))
        ).all()
    )
    return [_public(s, counts, copies, principal) for s in studies]


def upload_public(
    db: Database, principal: Principal, audit: AuditLog, result: IngestResult
) -> StudyUploadPublic:
    """The answer to an upload or a PACS import; a de-identified copy it made is audited.

    Args:
        db: The service database.
        principal: Who stored the files (what they may see of the study is shown).
        audit: The request's audit log.
        result: What the ingest stored.
    """
    if result.deidentified_study_id:
        copy = f"study/{result.deidentified_study_id}"
        audit.record("study.deidentify", copy, Outcome.OK, f"copy of study/{result.study_id}")
    with db.reading() as session:
        public = public_studies(session, [load_study(session, result.study_id)], principal)[0]
    return StudyUploadPublic(
        **public.model_dump(),
        instances_added=result.added,
        instances_already_present=result.already_present,
        skipped=list(result.skipped),
    )


def _public(
    study: Study, counts: dict[int, int], copies: dict[str | None, str], principal: Principal
) -> StudyPublic:
    nifti = study.kind == StudyKind.NIFTI.value
    series = [
        SeriesPublic(
            series_uid=s.series_uid,
            modality=s.modality,
            description=s.description,
            instances=1 if nifti else counts.get(s.id, 0),
            rows=s.rows,
            columns=s.columns,
            is_image=s.is_image,
        )
        for s in study.series
    ]
    patient = study.identified and principal.can_see_identified()
    return StudyPublic(
        id=study.id,
        study_uid=study.study_uid,
        kind=StudyKind(study.kind),
        identified=study.identified,
        source_study_id=study.source_study_id if principal.can_see_identified() else None,
        deidentified_study_id=copies.get(study.id),
        created_at=study.created_at,
        created_by=study.created_by,
        patient_name=person_name(study.patient_name) if patient else None,
        patient_id=(study.patient_id or None) if patient else None,
        study_date=dicom_date(study.study_date),
        description=study.description,
        series=series,
    )


def person_name(value: str) -> str | None:
    """A DICOM person name for reading: ``Doe^John^^Dr`` -> ``Doe, John`` (None when empty)."""
    family, _, rest = value.partition("^")
    given = " ".join(part for part in rest.split("^")[:2] if part)
    shown = ", ".join(part for part in (family.strip(), given.strip()) if part)
    return shown or None


def dicom_date(value: str) -> date | None:
    """A DICOM DA value (``YYYYMMDD``) as a date; None when empty or not a real date."""
    try:
        return datetime.strptime(value, "%Y%m%d").date() if value else None
    except ValueError:
        return None


def segmentation_input(study: Study, series_uid: str | None) -> SegmentationInput:
    """Choose what a job on ``study`` reads.

    Raises:
        BadRequestError: If the series is unknown or not an image, or the study holds several
            image series and none was named (the message lists them).
    """
    if study.kind == StudyKind.NIFTI.value:
        if series_uid not in (None, study.study_uid):
            raise BadRequestError(f"study {study.id} is one NIfTI image; leave series_uid out")
        return SegmentationInput(study.series[0].path, None, study.series[0].modality)
    images = [s for s in study.series if s.is_image]
    if series_uid is not None:
        chosen = [s for s in study.series if s.series_uid == series_uid]
        if not chosen:
            raise BadRequestError(f"study {study.id} holds no series {series_uid}")
        if not chosen[0].is_image:
            raise BadRequestError(
                f"series {series_uid} is a {chosen[0].modality} object, not an image"
            )
        return _dicom_input(chosen[0])
    if len(images) == 1:
        return _dicom_input(images[0])
    if not images:
        raise BadRequestError(f"study {study.id} holds no image series")
    listing = "; ".join(f"{s.series_uid} ({s.modality}, {s.description!r})" for s in images)
    raise BadRequestError(
        f"study {study.id} holds {len(images)} image series; choose a series_uid: {listing}"
    )


def _dicom_input(series: Series) -> SegmentationInput:
    return SegmentationInput(series.path, series.series_uid, series.modality)


def delete_study(db: Database, storage: Storage, study_id: str) -> list[str]:
    """Delete a study, its de-identified copies, their jobs and results, rows then files.

    Returns:
        The ids of the deleted studies.

    Raises:
        NotFoundError: If there is no such study.
    """
    with db.writing(lock=f"delete:{study_id}") as session:
        study = load_study(session, study_id)
        ids = [
            study.id,
            *session.scalars(select(Study.id).where(Study.source_study_id == study.id)),
        ]
        jobs = list(session.scalars(select(Job.id).where(Job.study_id.in_(ids))))
        session.execute(delete(Job).where(Job.study_id.in_(ids)))
        session.execute(delete(Instance).where(Instance.study_id.in_(ids)))
        session.execute(delete(Series).where(Series.study_id.in_(ids)))
        session.execute(delete(Study).where(Study.id.in_(ids[1:])))
        session.execute(delete(Study).where(Study.id == study.id))
    for job_id in jobs:
        storage.discard(storage.results_dir(job_id))
    for deleted in ids:
        storage.discard(storage.study_dir(deleted))
    return ids
