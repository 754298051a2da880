"""Run the service: the API with uvicorn (``serve``) or a stand-alone worker process (``work``)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import uvicorn

from medverse.core.logging import configure_logging
from medverse.core.settings import Settings
from medverse.service.app import build_services, create_app, silence_phi_prone_loggers
from medverse.service.jobs.store import requeue_expired
from medverse.service.jobs.worker import Worker


def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, run_worker: bool = True
) -> None:
    """Serve the API with uvicorn until interrupted (Ctrl-C or SIGTERM).

    Args:
        settings: The service settings.
        host: Address to listen on (loopback by default; put a TLS proxy in front to expose it).
        port: TCP port.
        run_worker: Also run one worker thread in this process.
    """
    _set_threads(settings.num_threads)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, run_worker=run_worker)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,  # uvicorn's own loggers keep the handler configure_logging gave them
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        server_header=False,
    )


def work(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run one worker against the service database until ``stop`` is set or SIGTERM/SIGINT.

    Args:
        settings: The same settings (database URL, data dir, models dir) as the API.
        stop: Set it to stop after the current job (signals set it too, when this runs on
            the main thread).
    """
    services = build_services(settings)
    silence_phi_prone_loggers()
    services.db.create_schema()
    services.storage.sweep()
    requeue_expired(services.db, settings.max_attempts)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    _set_threads(settings.num_threads)
    try:
        Worker(settings, services.db, services.storage, services.catalog).run_forever(stop)
    finally:
        services.db.dispose()


def _set_threads(count: int) -> None:
    if count > 0:
        import torch

        torch.set_num_threads(count)
