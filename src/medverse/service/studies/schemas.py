"""The studies API's bodies: a study with its series, an upload's outcome, a deletion."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from medverse.service.tables import StudyKind


class SeriesPublic(BaseModel):
    """One series of a study."""

    series_uid: str
    modality: str
    description: str
    instances: int = Field(description="stored objects (1 for a NIfTI image)")
    rows: int
    columns: int
    is_image: bool


class StudyPublic(BaseModel):
    """A stored study with its series."""

    id: str
    study_uid: str
    kind: StudyKind
    identified: bool = Field(description="false for de-identified studies (what researchers see)")
    source_study_id: str | None = Field(
        None, description="for a de-identified copy: the identified study (hidden from researchers)"
    )
    deidentified_study_id: str | None = Field(
        None, description="for an identified study: its de-identified copy"
    )
    created_at: datetime
    created_by: str
    patient_name: str | None = Field(
        None,
        description="identified studies, to admins and clinicians only: 'Family, Given'",
    )
    patient_id: str | None = Field(
        None, description="identified studies, to admins and clinicians only"
    )
    study_date: date | None = Field(None, description="the DICOM StudyDate (none for NIfTI)")
    description: str = Field("", description="the DICOM StudyDescription")
    series: list[SeriesPublic]


class StudyUploadPublic(StudyPublic):
    """The study an upload went into, and what the upload added."""

    instances_added: int
    instances_already_present: int
    skipped: list[str] = Field(
        default_factory=list, description="zip entries left out: neither DICOM nor NIfTI"
    )


class StudyDeletedPublic(BaseModel):
    """What a study deletion removed (the study and its de-identified copies)."""

    deleted_study_ids: list[str]
