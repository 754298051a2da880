"""The jobs API's bodies: a job request, a job's state, and the names of its results."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from medverse.service.schemas import ID_PATTERN, MODEL_NAME_PATTERN, UID_PATTERN
from medverse.service.tables import JobState


class ResultName(StrEnum):
    """The files of a finished job."""

    LABELS = "labels.nii.gz"
    SEG = "seg.dcm"
    MESHES = "meshes.glb"
    REPORT = "report.json"
    OVERVIEW = "overview.png"


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
    retrying: bool = Field(
        False,
        description="an earlier attempt's worker died or failed and the job runs (or waits) again",
    )
    worker_lost: bool = Field(
        False, description="running, but its worker stopped renewing the lease: to be retried"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_by: str
    results: list[ResultName]
