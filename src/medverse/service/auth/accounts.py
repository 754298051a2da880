"""User accounts: add, remove, list, and issue tokens (the CLI and the users router call these)."""

from __future__ import annotations

import re

from sqlalchemy import delete, select

from medverse.service.auth.schemas import UserPublic
from medverse.service.auth.security import make_token
from medverse.service.db import Database
from medverse.service.errors import BadRequestError, ConflictError, NotFoundError
from medverse.service.tables import ApiToken, Role, User

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def add_user(db: Database, name: str, role: Role | str) -> User:
    """Create a user.

    Args:
        db: The service database.
        name: Letters, digits and ``. _ @ -``, at most 64 characters.
        role: ``admin``, ``clinician`` or ``researcher``.

    Raises:
        BadRequestError: If the name or role is invalid.
        ConflictError: If the name is taken.
    """
    role = _role(role)
    if not _NAME.match(name):
        raise BadRequestError(
            f"invalid user name {name!r}: use letters, digits and . _ @ - (at most 64)"
        )
    with db.writing(lock="users") as session:
        if session.scalar(select(User).where(User.name == name)) is not None:
            raise ConflictError(f"user {name!r} already exists")
        user = User(name=name, role=role.value)
        session.add(user)
    return user


def remove_user(db: Database, name: str) -> User:
    """Delete a user and all their tokens (audit entries keep the name); return the user.

    Raises:
        NotFoundError: If there is no such user.
    """
    with db.writing(lock="users") as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFoundError(f"no user {name!r}")
        session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        session.delete(user)
    return user


def issue_token(db: Database, name: str, pepper: str, *, revoke_others: bool = False) -> str:
    """Make a new API token for a user and return it; only its hash is stored.

    Args:
        db: The service database.
        name: The user.
        pepper: ``settings.token_pepper``.
        revoke_others: Also delete the user's earlier tokens.

    Raises:
        NotFoundError: If there is no such user.
    """
    with db.writing(lock="users") as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise NotFoundError(f"no user {name!r}")
        if revoke_others:
            session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        token = make_token(user, pepper)
        session.add(token.record)
    return token.text


def list_users(db: Database) -> list[tuple[User, int]]:
    """Every user with their number of tokens, by name."""
    with db.reading() as session:
        users = list(session.scalars(select(User).order_by(User.name)))
        return [(user, len(user.tokens)) for user in users]


def user_public(user: User, tokens: int) -> UserPublic:
    """What the API and the CLI show of a user (never a token)."""
    return UserPublic(
        name=user.name, role=Role(user.role), created_at=user.created_at, tokens=tokens
    )


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise BadRequestError(f"unknown role {role!r}; choose one of {known}") from None
