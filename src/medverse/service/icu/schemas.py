"""Request and response bodies of the ICU routes."""

from __future__ import annotations

from pydantic import BaseModel


class ScorePublic(BaseModel):
    """What an observation became: stored or a resend, and the bed's NEWS2 then."""

    stored: bool
    news2_total: int | None
    news2_minimum: int | None
    completeness: str | None
    risk: str | None
    suppressed: list[str]


class BedPublic(BaseModel):
    """A bed's newest stored vital set and its score."""

    ward: str
    bed: str
    observed_at: float
    values: dict[str, float | None]
    news2_total: int | None
    news2_minimum: int
    completeness: str
    risk: str | None
    suppressed: str | None
    flags: str | None


class AlertPublic(BaseModel):
    """An alert of a bed."""

    id: int
    bed_id: str
    ward: str
    level: str
    reason: str
    opened_at: float
    escalations: int
    acknowledged_by: str | None
    acknowledged_at: float | None
    resolved_at: float | None


class MembershipPublic(BaseModel):
    """A user's wards."""

    user: str
    wards: list[str]
