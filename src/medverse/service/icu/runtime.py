"""One ICU runtime per app (store in the service database, monitor, group-commit ingestor)."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, Request

from medverse.icu.api import IcuRuntime, open_runtime
from medverse.service.deps import ServicesDep

_LOCK = threading.Lock()


async def get_runtime(request: Request, services: ServicesDep) -> IcuRuntime:
    """The app's ICU runtime, opened (tables created, writer started) on first use.

    Opened on the serving loop, as its writer task lives there; the first call blocks the loop
    for the table check only.
    """
    with _LOCK:
        runtime: IcuRuntime | None = getattr(request.app.state, "icu_runtime", None)
        if runtime is None:
            runtime = open_runtime(services.db.url.render_as_string(hide_password=False))
            runtime.ingestor.start()
            request.app.state.icu_runtime = runtime
    return runtime


RuntimeDep = Annotated[IcuRuntime, Depends(get_runtime)]
