"""API tokens: random, shown once, stored as a salted HMAC-SHA256 under a server-side pepper."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from medverse.service.errors import ForbiddenError
from medverse.service.tables import ApiToken, Role, User

TOKEN_PREFIX = "mvt"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user name and role (no patient data, safe to log and audit).

    Attributes:
        name: The user name.
        role: The user's role.
    """

    name: str
    role: Role

    def can_see_identified(self) -> bool:
        """Admins and clinicians may read identified studies; researchers may not."""
        return self.role in (Role.ADMIN, Role.CLINICIAN)


def require_role(principal: Principal, *roles: Role) -> None:
    """Refuse the caller unless it has one of ``roles``.

    Raises:
        ForbiddenError: Naming the roles needed.
    """
    if principal.role not in roles:
        needed = " or ".join(r.value for r in roles)
        raise ForbiddenError(f"this needs the role {needed}; you are {principal.role.value}")


@dataclass(frozen=True)
class NewToken:
    """A token just made: ``text`` goes to the user once; ``record`` is what is stored."""

    text: str
    record: ApiToken


def make_token(user: User, pepper: str) -> NewToken:
    """Make a new random token for ``user`` (``mvt_<id>_<secret>``, 256 random bits).

    Args:
        user: The owner.
        pepper: The server secret (``settings.token_pepper``).
    """
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    record = ApiToken(id=token_id, user=user, salt=salt, digest=_digest(pepper, salt, secret))
    return NewToken(f"{TOKEN_PREFIX}_{token_id}_{secret}", record)


def authenticate(session: Session, token: str, pepper: str) -> Principal | None:
    """Return the user a bearer token belongs to, or None for an unknown or malformed token.

    The token's id finds its record; the secret is checked against the stored digest in
    constant time.
    """
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not secret or len(token) > 200 or not _is_token_id(token_id):
        return None
    record = session.get(ApiToken, token_id)
    if record is None:
        return None
    expected = _digest(pepper, record.salt, secret)
    if not hmac.compare_digest(expected, record.digest):
        return None
    return Principal(record.user.name, Role(record.user.role))


def _is_token_id(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


def _digest(pepper: str, salt: str, secret: str) -> str:
    message = salt.encode("ascii") + b":" + secret.encode("utf-8")
    return hmac.new(pepper.encode("utf-8"), message, hashlib.sha256).hexdigest()
