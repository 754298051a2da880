"""``/api/users``: who am I; user and token management for admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from medverse.service.audit.store import AuditLog
from medverse.service.auth.accounts import (
    add_user,
    issue_token,
    list_users,
    remove_user,
    user_public,
)
from medverse.service.auth.schemas import PrincipalPublic, TokenPublic, UserCreate, UserPublic
from medverse.service.deps import AdminDep, AuditDep, PrincipalDep, ServicesDep
from medverse.service.rooms.hub import RoomHub
from medverse.service.schemas import USER_PATTERN, ErrorPublic
from medverse.service.tables import Role

router = APIRouter(prefix="/api/users", tags=["users"])
UserName = Annotated[str, Path(pattern=USER_PATTERN)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic} for code in (400, 401, 403, 404, 409)
}


def _admin_audit(audit: AuditDep, _admin: AdminDep) -> AuditLog:
    """The audit recorder of an admin-only route (refused before it for anyone else)."""
    return audit


AdminAuditDep = Annotated[AuditLog, Depends(_admin_audit)]


@router.get("/me", response_model=PrincipalPublic, responses=_ERRORS, summary="Who am I")
def get_me(principal: PrincipalDep) -> PrincipalPublic:
    """The user and role the token belongs to."""
    return PrincipalPublic(name=principal.name, role=principal.role)


@router.get("", response_model=list[UserPublic], responses=_ERRORS, summary="List users")
def get_users(services: ServicesDep, _admin: AdminDep) -> list[UserPublic]:
    """Every user with their role and number of tokens (admins only)."""
    return [user_public(u, n) for u, n in list_users(services.db)]


@router.post(
    "", response_model=UserPublic, status_code=201, responses=_ERRORS, summary="Add a user"
)
def post_user(body: UserCreate, services: ServicesDep, audit: AdminAuditDep) -> UserPublic:
    """Create a user (admins only; audited); then issue a token for them."""
    with audit.action("user.create", f"user/{body.name}"):
        user = add_user(services.db, body.name, body.role)
    return user_public(user, tokens=0)


@router.delete("/{name}", response_model=PrincipalPublic, responses=_ERRORS, summary="Remove")
async def delete_user(
    name: UserName, request: Request, services: ServicesDep, audit: AdminAuditDep
) -> PrincipalPublic:
    """Remove a user, revoke all their tokens and close their open room sockets (audited)."""

    def remove() -> Any:
        with audit.action("user.remove", f"user/{name}"):
            return remove_user(services.db, name)

    user = await run_in_threadpool(remove)
    hub: RoomHub = request.app.state.rooms
    hub.disconnect_user(user.name)
    return PrincipalPublic(name=user.name, role=Role(user.role))


@router.post(
    "/{name}/tokens",
    response_model=TokenPublic,
    status_code=201,
    responses=_ERRORS,
    summary="Issue a token",
)
def post_token(name: UserName, services: ServicesDep, audit: AdminAuditDep) -> TokenPublic:
    """Issue a new token for a user (admins only; audited, never the token); shown this once."""
    pepper = services.settings.token_pepper.get_secret_value()
    with audit.action("token.issue", f"user/{name}"):
        token = issue_token(services.db, name, pepper)
    return TokenPublic(user=name, token=token)
