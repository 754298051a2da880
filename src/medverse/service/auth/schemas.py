"""The users API's bodies: a new user, a listed user, an issued token, the caller."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from medverse.service.schemas import USER_PATTERN
from medverse.service.tables import Role


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


class PrincipalPublic(BaseModel):
    """Who the token belongs to."""

    name: str
    role: Role
