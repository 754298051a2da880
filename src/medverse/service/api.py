"""The service's public face: what ``medverse users|serve|worker|demo`` and Python users call.

Everything else under ``medverse.service`` is internal; the CLI imports only this module
(import-linter checks it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from medverse.core.settings import Settings
from medverse.service.auth import accounts
from medverse.service.auth.schemas import PrincipalPublic, UserPublic
from medverse.service.db import Database, open_database
from medverse.service.demo import DemoService, prepare_demo
from medverse.service.server import serve, work
from medverse.service.tables import Role

__all__ = [
    "DemoService",
    "Role",
    "add_user",
    "issue_token",
    "list_users",
    "prepare_demo",
    "remove_user",
    "serve",
    "work",
]


def add_user(settings: Settings, name: str, role: Role | str) -> UserPublic:
    """Create a user in the service database of ``settings``.

    Args:
        settings: The service settings (data dir or database URL).
        name: Letters, digits and ``. _ @ -``.
        role: ``admin``, ``clinician`` or ``researcher``.

    Raises:
        BadRequestError: If the name or role is invalid.
        ConflictError: If the user exists.
    """
    with _database(settings) as db:
        return accounts.user_public(accounts.add_user(db, name, role), tokens=0)


def remove_user(settings: Settings, name: str) -> PrincipalPublic:
    """Delete a user and revoke all their tokens; return who was removed.

    Raises:
        NotFoundError: If there is no such user.
    """
    with _database(settings) as db:
        user = accounts.remove_user(db, name)
    return PrincipalPublic(name=user.name, role=Role(user.role))


def issue_token(settings: Settings, name: str, *, revoke_others: bool = False) -> str:
    """Make a new API token for a user and return it (only its hash is stored).

    Args:
        settings: The service settings (its token pepper hashes the token).
        name: The user.
        revoke_others: Also revoke the user's earlier tokens.

    Raises:
        NotFoundError: If there is no such user.
    """
    pepper = settings.token_pepper.get_secret_value()
    with _database(settings) as db:
        return accounts.issue_token(db, name, pepper, revoke_others=revoke_others)


def list_users(settings: Settings) -> list[UserPublic]:
    """Every user with their role and number of tokens, by name."""
    with _database(settings) as db:
        return [accounts.user_public(user, tokens) for user, tokens in accounts.list_users(db)]


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    db = open_database(settings)
    try:
        yield db
    finally:
        db.dispose()
