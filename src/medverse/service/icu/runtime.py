"""One ICU runtime per app (store in the service database, monitor, group-commit ingestor)."""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any

from fastapi import Depends, Request

from medverse.icu.api import IcuRuntime, open_runtime
from medverse.service.deps import Services, ServicesDep
from medverse.service.icu.live import LiveHub

_LOCK = threading.Lock()


def runtime_of(app: Any, services: Services) -> IcuRuntime:
    """The app's ICU runtime, opened (tables created, writer started, live hub attached) once.

    Call it on the serving loop: the writer task and the hub live there. The first call
    blocks the loop for the table check only.
    """
    with _LOCK:
        runtime: IcuRuntime | None = getattr(app.state, "icu_runtime", None)
        if runtime is None:
            runtime = open_runtime(services.db.url.render_as_string(hide_password=False))
            hub = LiveHub(asyncio.get_running_loop())
            runtime.ingestor.listeners.append(hub.publish_from_writer)
            runtime.ingestor.start()
            app.state.icu_hub = hub
            app.state.icu_runtime = runtime
    return runtime


async def get_runtime(request: Request, services: ServicesDep) -> IcuRuntime:
    """Dependency: the app's ICU runtime."""
    return runtime_of(request.app, services)


RuntimeDep = Annotated[IcuRuntime, Depends(get_runtime)]
