"""``/healthz`` (no token, for load balancers) and ``/metrics`` (an admin token, for Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

import medverse
from medverse.core.logging import get_logger
from medverse.service.deps import AdminDep, ServicesDep
from medverse.service.health.metrics import CONTENT_TYPE, render_metrics
from medverse.service.health.schemas import HealthPublic
from medverse.service.schemas import ErrorPublic

router = APIRouter(tags=["health"])
_LOG = get_logger(__name__)


@router.get(
    "/healthz",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic}},
    summary="Health check",
)
def healthz(services: ServicesDep) -> HealthPublic | JSONResponse:
    """``ok`` when the database answers; 503 otherwise."""
    version = str(medverse.__version__)
    try:
        services.db.ping()
    except Exception as error:
        _LOG.error("health check: database unreachable (%s)", type(error).__name__)
        body = HealthPublic(status="unavailable", database="unreachable", version=version)
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthPublic(status="ok", database="ok", version=version)


@router.get(
    "/metrics",
    response_model=None,
    response_class=PlainTextResponse,
    responses={
        200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}},
        401: {"model": ErrorPublic},
        403: {"model": ErrorPublic},
    },
    summary="Prometheus metrics",
)
def metrics(services: ServicesDep, _admin: AdminDep) -> PlainTextResponse:
    """Queue depth by state, job durations, stored studies, GPU memory (admins only).

    Prometheus sends the token with ``authorization: {credentials: <token>}`` in its scrape
    configuration.
    """
    return PlainTextResponse(render_metrics(services.db), media_type=CONTENT_TYPE)
