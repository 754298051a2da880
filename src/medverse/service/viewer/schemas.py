"""The viewer API's bodies: a job's label colour table."""

from __future__ import annotations

from pydantic import BaseModel


class LabelPublic(BaseModel):
    """One structure of a job's label map, as the viewer colours and lists it."""

    value: int
    name: str
    color: tuple[int, int, int]
    volume_ml: float
    centroid_mm: tuple[float, float, float]


class LabelTablePublic(BaseModel):
    """The colour table of a job's labels (registry colours and names)."""

    job_id: str
    model: str
    structures: list[LabelPublic]
