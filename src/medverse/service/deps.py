"""Request dependencies as ``Annotated`` aliases: the app's services, the caller and its role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from medverse.core.logging import get_logger
from medverse.core.settings import Settings
from medverse.service.audit.store import AuditLog, record_failed_sign_in
from medverse.service.auth.security import Principal, authenticate, require_role
from medverse.service.db import Database
from medverse.service.errors import UnauthorizedError
from medverse.service.models.catalog import ModelCatalog
from medverse.service.storage import Storage
from medverse.service.studies.ingest import Ingestor
from medverse.service.tables import Role

_LOG = get_logger(__name__)
_bearer = HTTPBearer(auto_error=False, description="an API token from `medverse users token`")


@dataclass(frozen=True)
class Services:
    """Everything one app instance holds (built by ``create_app``, kept on ``app.state``).

    Attributes:
        settings: The settings the app was made with.
        db: The database.
        storage: The data-dir layout.
        catalog: The models folder.
        ingestor: Stores uploads as studies.
    """

    settings: Settings
    db: Database
    storage: Storage
    catalog: ModelCatalog
    ingestor: Ingestor


def get_services(request: Request) -> Services:
    """The app's services."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (after uvicorn's proxy-header handling)."""
    return request.client.host if request.client else "unknown"


ClientDep = Annotated[str, Depends(client_address)]


def current_principal(
    request: Request,
    services: ServicesDep,
    client: ClientDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller named by the bearer token (a refusal is audited as a failed sign-in).

    Raises:
        UnauthorizedError: Without a token, or with an unknown one.
    """
    channel = f"http:{request.method} {request.url.path}"
    if credentials is None or credentials.scheme.lower() != "bearer":
        record_failed_sign_in(services.db, client, channel, "missing bearer token")
        raise UnauthorizedError("missing bearer token (Authorization: Bearer <token>)")
    pepper = services.settings.token_pepper.get_secret_value()
    with services.db.reading() as session:
        principal = authenticate(session, credentials.credentials, pepper)
    if principal is None:
        _LOG.warning("rejected an invalid API token from %s", client)
        record_failed_sign_in(services.db, client, channel, "invalid or revoked token")
        raise UnauthorizedError("invalid or revoked API token")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only ``roles`` through (403 for the others)."""

    def check(principal: PrincipalDep) -> Principal:
        require_role(principal, *roles)
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_roles(Role.ADMIN))]


def audit_log(services: ServicesDep, principal: PrincipalDep, client: ClientDep) -> AuditLog:
    """The audit recorder for this caller."""
    return AuditLog(services.db, principal, client)


AuditDep = Annotated[AuditLog, Depends(audit_log)]
