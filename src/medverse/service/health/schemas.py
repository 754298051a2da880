"""The health API's body: liveness and database reachability."""

from __future__ import annotations

from pydantic import BaseModel


class HealthPublic(BaseModel):
    """Liveness and database reachability."""

    status: str
    database: str
    version: str
