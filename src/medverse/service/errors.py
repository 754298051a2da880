"""HTTP errors of the service and the handlers that turn every failure into a clear JSON answer."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from medverse.core.errors import MedverseError
from medverse.core.logging import get_logger

_LOG = get_logger(__name__)


class ServiceError(MedverseError):
    """An error with an HTTP status and a one-line message for the client (and the CLI).

    Args:
        detail: What is wrong, in words the caller can act on (never patient data).
    """

    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)

    @property
    def detail(self) -> str:
        """The message on one line."""
        return self.one_line()


class BadRequestError(ServiceError):
    """The request cannot be carried out as given (400)."""


class UnauthorizedError(ServiceError):
    """No valid bearer token (401)."""

    status_code = 401


class ForbiddenError(ServiceError):
    """The caller's role does not allow this (403)."""

    status_code = 403


class NotFoundError(ServiceError):
    """No such resource (404)."""

    status_code = 404


class ConflictError(ServiceError):
    """The resource is not in a state that allows this (409)."""

    status_code = 409


class PayloadTooLargeError(ServiceError):
    """The request body is over the configured limit (413)."""

    status_code = 413


def install_error_handlers(app: FastAPI) -> None:
    """Answer ServiceError with its status, MedverseError with 400, anything else with 500."""

    async def service_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ServiceError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, UnauthorizedError) else None
        return JSONResponse({"detail": error.detail}, error.status_code, headers=headers)

    async def medverse_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, MedverseError)
        text = error.one_line()
        storage = getattr(request.app.state, "storage", None)
        return JSONResponse({"detail": storage.redact(text) if storage else text}, 400)

    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        # The message may quote file contents: log the kind of error only.
        _LOG.error("internal error: %s", type(error).__name__)
        return JSONResponse({"detail": "internal server error"}, 500)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(MedverseError, medverse_error)
    app.add_exception_handler(Exception, unexpected)
