"""The built web viewer, served at ``/`` from the package (``web_dist/``, built by ``make web``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.staticfiles import StaticFiles

from medverse.core.logging import get_logger

_LOG = get_logger(__name__)
WEB_DIST = Path(__file__).resolve().parent / "web_dist"
NOT_BUILT = (
    "<!doctype html><title>medverse</title><h1>medverse</h1><p>The web viewer is not built. "
    "Run <code>make web</code> (npm ci and a Vite build into "
    "<code>src/medverse/service/web_dist/</code>), then restart the service. The API schema is "
    'at <a href="/openapi.json">/openapi.json</a>.</p>'
)
# Swagger UI from npm (swagger-ui-dist), copied into the build by `make web`: no CDN.
SWAGGER = "/assets/swagger"
# The viewer's own page may run only its bundled scripts; it talks to this origin only
# ('self' covers the room's ws:/wss: socket to this host, and no other host).
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self' blob: data:; worker-src 'self' blob:"
)


def install_static(app: FastAPI, folder: Path = WEB_DIST) -> None:
    """Serve the viewer: ``/`` is its page, ``/assets/...`` its bundled files, ``/docs`` the API.

    Only these three paths are taken (no catch-all mount), so API routes added later still win.

    Args:
        app: The service app.
        folder: The Vite build output (``index.html`` and ``assets/``).
    """
    index = folder / "index.html"
    if not index.is_file():
        _LOG.info("web viewer not built (%s missing); / explains how to build it", index)

    @app.get("/", include_in_schema=False, response_model=None)
    def viewer_page() -> FileResponse | HTMLResponse:
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=503)
        return FileResponse(index, media_type="text/html", headers={"content-security-policy": CSP})

    assets = folder / "assets"

    @app.get("/docs", include_in_schema=False, response_model=None)
    def api_docs() -> HTMLResponse:
        if not (assets / "swagger" / "swagger-ui-bundle.js").is_file():
            return HTMLResponse(NOT_BUILT, status_code=503)
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="medverse API",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        )

    app.mount("/assets", StaticFiles(directory=assets, check_dir=False), name="web-assets")
