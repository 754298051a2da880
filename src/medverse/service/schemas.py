"""The API's request and response bodies (``XCreate`` in, ``XPublic`` out); never patient data."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from medverse.service.tables import JobState, Role, StudyKind

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
ID_PATTERN = r"^[A-Za-z0-9-]{1,36}$"
USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
# Free text in filters: anything printable (no control characters, which some databases refuse).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
MAX_ID = 2**63 - 1


class ResultName(StrEnum):
    """The files of a finished job."""

    LABELS = "labels.nii.gz"
    SEG = "seg.dcm"
    MESHES = "meshes.glb"
    REPORT = "report.json"
    OVERVIEW = "overview.png"


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
    series: list[SeriesPublic]


class StudyUploadPublic(StudyPublic):
    """The study an upload went into, and what the upload added."""

    instances_added: int
    instances_already_present: int


class JobCreate(BaseModel):
    """A request to segment one series of a study with a model."""

    model_config = ConfigDict(extra="forbid")

    study_id: str = Field(pattern=ID_PATTERN)
    series_uid: str | None = Field(None, max_length=64, pattern=UID_PATTERN)
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="a name from GET /api/models")


class JobPublic(BaseModel):
    """A job's state and, once it has succeeded, the names of its results."""

    id: str
    study_id: str
    series_uid: str | None
    model: str
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_by: str
    results: list[ResultName]


class ModelPublic(BaseModel):
    """A model checkpoint in the models folder."""

    name: str
    file: str
    preset: str
    modality: str
    labels: dict[int, str]
    target_spacing: tuple[float, float, float]
    size_bytes: int
    created: str | None


class UserCreate(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=USER_PATTERN, description="letters, digits and . _ @ -")
    role: Role


class UserPublic(BaseModel):
    """A user (tokens are never shown again after they are issued)."""

    name: str
    role: Role
    created_at: datetime
    tokens: int


class TokenPublic(BaseModel):
    """A token just issued: store it now, it is not shown again."""

    user: str
    token: str


class AuditEventPublic(BaseModel):
    """One audit entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    resource: str
    client: str
    outcome: str
    detail: str


class HealthPublic(BaseModel):
    """Liveness and database reachability."""

    status: str
    database: str
    version: str


class ErrorPublic(BaseModel):
    """Every error answer: one line saying what is wrong."""

    detail: str


class StudyDeletedPublic(BaseModel):
    """What a study deletion removed (the study and its de-identified copies)."""

    deleted_study_ids: list[str]


class PrincipalPublic(BaseModel):
    """Who the token belongs to."""

    name: str
    role: Role
