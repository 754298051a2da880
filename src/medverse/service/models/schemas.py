"""The models API's body: one checkpoint in the models folder."""

from __future__ import annotations

from pydantic import BaseModel


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
