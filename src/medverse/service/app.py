"""``create_app(settings)``: the FastAPI application, its services, routers and lifecycle."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import medverse
from medverse.core.logging import get_logger
from medverse.core.settings import DEVELOPMENT_TOKEN_PEPPER, Settings
from medverse.service.audit import router as audit_router
from medverse.service.auth import router as auth_router
from medverse.service.db import Database, database_url
from medverse.service.decision import router as decision_router
from medverse.service.deps import Services
from medverse.service.errors import install_error_handlers
from medverse.service.health import router as health_router
from medverse.service.icu import router as icu_router
from medverse.service.jobs import router as jobs_router
from medverse.service.jobs.store import requeue_expired
from medverse.service.jobs.worker import Worker, WorkerThread
from medverse.service.models import router as models_router
from medverse.service.models.catalog import ModelCatalog
from medverse.service.pacs import router as pacs_router
from medverse.service.results import router as results_router
from medverse.service.rooms import install_rooms
from medverse.service.static import install_static
from medverse.service.storage import Storage
from medverse.service.studies import router as studies_router
from medverse.service.studies.archive import ArchiveLimits
from medverse.service.studies.ingest import Ingestor
from medverse.service.studies.uploads import too_large
from medverse.service.viewer import router as viewer_router

_LOG = get_logger(__name__)
# Bodies other than study uploads are small JSON documents.
MAX_JSON_BYTES = 1 << 20
UPLOAD_PATH = "/api/studies"
# No page of this origin may be framed (clickjacking): the CSP directive, and the older header.
SECURITY_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
# One router per resource, in the order the OpenAPI document lists them (rooms, then the
# viewer's data, follow).
ROUTERS = (
    studies_router,
    jobs_router,
    results_router,
    models_router,
    pacs_router,
    decision_router,
    icu_router,
    auth_router,
    audit_router,
    health_router,
)


def build_services(settings: Settings) -> Services:
    """Make the database engine, storage layout, model catalog and ingestor of one app."""
    storage = Storage(settings.data_dir)
    db = Database(database_url(settings))
    limits = ArchiveLimits(
        max_entries=settings.max_archive_entries,
        max_total_bytes=settings.max_archive_bytes,
        max_ratio=settings.max_compression_ratio,
    )
    catalog = ModelCatalog(settings.models_dir)
    return Services(settings, db, storage, catalog, Ingestor(db, storage, limits))


def create_app(settings: Settings, *, run_worker: bool = False) -> FastAPI:
    """Build the medverse service for ``settings``.

    Nothing touches the database until the app starts; at start-up the schema is created if
    missing and running jobs whose lease has expired are re-queued (or failed when out of
    attempts).

    Args:
        settings: Data dir, database URL, limits, secrets and worker settings.
        run_worker: Also run one worker thread in this process (``medverse serve``).
    """
    services = build_services(settings)
    silence_phi_prone_loggers()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_start, services)
        thread = None
        if run_worker:
            worker = Worker(settings, services.db, services.storage, services.catalog)
            thread = WorkerThread(worker)
            thread.start()
        try:
            yield
        finally:
            if thread is not None:
                await run_in_threadpool(thread.stop)
            icu = getattr(_app.state, "icu_runtime", None)
            if icu is not None:  # its writer task lives on this loop: stop it before the loop
                await icu.ingestor.stop()
                icu.store.dispose()
            services.db.dispose()

    app = FastAPI(
        title="medverse",
        version=str(medverse.__version__),
        summary="Studies in, segmentation jobs run, results out; authenticated and audited.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: install_static serves /docs locally
        redoc_url=None,
    )
    app.state.services = services
    app.state.storage = services.storage
    install_error_handlers(app)
    for module in ROUTERS:
        app.include_router(module.router)
    install_rooms(app, services.db)
    app.include_router(viewer_router.router)
    install_static(app)
    app.add_middleware(GuardMiddleware, upload_limit=settings.max_upload_bytes)
    return app


def _start(services: Services) -> None:
    if services.settings.token_pepper.get_secret_value() == DEVELOPMENT_TOKEN_PEPPER:
        _LOG.warning(
            "MEDVERSE_TOKEN_PEPPER is the public development value: anyone who reads the "
            "database can test tokens against it. Set a secret of 32+ characters and "
            "MEDVERSE_ENVIRONMENT=production before real use (production refuses this value)"
        )
    _report_models(services)
    services.db.create_schema()
    services.storage.sweep()
    requeued, failed = requeue_expired(services.db, services.settings.max_attempts)
    if requeued or failed:
        _LOG.info(
            "start-up: %d job(s) re-queued, %d failed (worker leases expired)", requeued, failed
        )


def _report_models(services: Services) -> None:
    """Say where models are looked for, and warn when there are none (jobs could not run)."""
    folder = Path(services.settings.models_dir).expanduser().resolve()
    names = [m.name for m in services.catalog.available()]
    _LOG.info("models: %d in %s (%s)", len(names), folder, ", ".join(names) or "none")
    if not names:
        _LOG.warning(
            "no models found in %s: GET /api/models is empty and no job can run; put "
            "<name>.pt checkpoints there, or start with --models-dir / MEDVERSE_MODELS_DIR",
            folder,
        )


def silence_phi_prone_loggers() -> None:
    """Drop pydicom's and highdicom's log records and pydicom's warnings for good in the process.

    Both can quote element values (highdicom logs a patient name it finds malformed).
    """
    logging.getLogger("pydicom").disabled = True
    logging.getLogger("highdicom").disabled = True
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


class GuardMiddleware:
    """The outer guard: body-size limit, security headers, and a quiet 500 for bugs.

    Bodies announced as too large get 413 before anything is read, streamed ones as soon as
    they pass the limit (FastAPI reads a JSON body before it checks the token, so an anonymous
    caller could otherwise fill the memory); every answer is marked
    not cacheable; an unhandled exception becomes a bare 500 and is logged by type only
    (its message may quote patient data, so the server never logs it).

    Args:
        app: The wrapped application.
        upload_limit: Largest study upload; other requests may send ``MAX_JSON_BYTES``.
    """

    def __init__(self, app: ASGIApp, upload_limit: int) -> None:
        self.app = app
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared body size, then pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _send_json(send, 413, refusal)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, self._counted(scope, receive), send_with_headers)
        except Exception as error:
            _LOG.error("internal error on %s: %s", scope["path"], type(error).__name__)
            if not started:
                await _send_json(send, 500, "internal server error")

    def _counted(self, scope: Scope, receive: Receive) -> Receive:
        """Refuse a body, chunked or not, once it is past the limit: the rest is never read.

        Study uploads count their own bytes as they stream them to disk.
        """
        if scope["path"] == UPLOAD_PATH:
            return receive
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_JSON_BYTES:
                raise HTTPException(413, f"request body too large (limit {MAX_JSON_BYTES} bytes)")
            return message

        return counted

    def _refusal(self, scope: Scope) -> str | None:
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if not declared.isdigit():
            return None
        if scope["path"] == UPLOAD_PATH:
            return (
                too_large(self.upload_limit).detail if int(declared) > self.upload_limit else None
            )
        if int(declared) > MAX_JSON_BYTES:
            return f"request body too large (limit {MAX_JSON_BYTES} bytes)"
        return None


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
