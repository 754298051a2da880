"""HTTP errors of the service and the handlers that turn every failure into a clear JSON answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from medverse.core.errors import MedverseError
from medverse.core.logging import get_logger

_LOG = get_logger(__name__)
# A validation message is the validator's words, never the input; this caps a custom one.
MAX_MESSAGE_CHARS = 200


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


class HiddenError(NotFoundError):
    """Refused, but answered exactly as a missing resource (404) so the caller learns nothing.

    The audit log still records it as denied.
    """


class ConflictError(ServiceError):
    """The resource is not in a state that allows this (409)."""

    status_code = 409


class PayloadTooLargeError(ServiceError):
    """The request body is over the configured limit (413)."""

    status_code = 413


def install_error_handlers(app: FastAPI) -> None:
    """Answer ServiceError with its status, MedverseError with 400, anything else with 500.

    A refused request body is answered 422 with ``detail`` one line naming the field and
    ``errors`` the per-field list, neither quoting the input.
    """

    async def service_error(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ServiceError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, UnauthorizedError) else None
        return JSONResponse({"detail": error.detail}, error.status_code, headers=headers)

    async def medverse_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, MedverseError)
        text = error.one_line()
        storage = getattr(request.app.state, "storage", None)
        return JSONResponse({"detail": storage.redact(text) if storage else text}, 400)

    async def invalid_request(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = [_field_error(item) for item in error.errors()]
        return JSONResponse({"detail": validation_line(errors), "errors": errors}, 422)

    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        # The message may quote file contents: log the kind of error only.
        _LOG.error("internal error: %s", type(error).__name__)
        return JSONResponse({"detail": "internal server error"}, 500)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(MedverseError, medverse_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    _document_validation_errors(app)
    app.add_exception_handler(Exception, unexpected)


def validation_line(errors: Sequence[Mapping[str, Any]]) -> str:
    """One line for a refused request: the first field's place and problem, and how many more.

    Args:
        errors: ``{"loc": [...], "msg": ...}`` items, the first one named.
    """
    if not errors:
        return "invalid request"
    first = errors[0]
    line = f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    more = len(errors) - 1
    return f"{line} (and {more} more problem{'s' if more > 1 else ''})" if more else line


def _field_error(item: Mapping[str, Any]) -> dict[str, Any]:
    """FastAPI's error item without its ``input`` and ``ctx`` (they echo what was sent)."""
    message = " ".join(str(item.get("msg", "invalid value")).split())
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
    return {"loc": list(item.get("loc", ())), "msg": message, "type": item.get("type", "")}


# The 422 answer as ``invalid_request`` sends it (FastAPI documents its own list shape).
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "one line naming the first bad field"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["loc", "msg", "type"],
            },
        },
    },
    "required": ["detail", "errors"],
}


def _document_validation_errors(app: FastAPI) -> None:
    """Publish the 422 shape this service answers with in the OpenAPI document.

    FastAPI's documented way to change the generated document is to wrap ``app.openapi``.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        components = schema.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in components:
            components["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
            components.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
