"""The PACS API's bodies: a study to import, and the SEG a push sent."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from medverse.service.schemas import UID_PATTERN


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
