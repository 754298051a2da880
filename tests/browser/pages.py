"""Browser-test page helpers: open the viewer signed in, read its state, click 3D points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page

VIEWPORT = {"width": 1400, "height": 860}
XR_EMULATION = Path(__file__).with_name("xr_emulation.js")
LOAD_TIMEOUT_MS = 180_000  # software WebGL on a loaded 2-core box: a CT loads in 5-60 s


def open_viewer(
    browser: Browser, base_url: str, token: str, study_id: str, *, emulate_xr: bool = False
) -> tuple[BrowserContext, Page]:
    """A fresh browser profile signed in with ``token`` and the study's room open."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    if emulate_xr:
        context.add_init_script(path=str(XR_EMULATION))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base_url}/#study={study_id}")
    page.fill("#token", token)
    page.click("#signin-form button[type=submit]")
    page.wait_for_function("() => window.medverse?.view?.loaded === true", timeout=LOAD_TIMEOUT_MS)
    assert not errors, errors
    return context, page


def crosshair(page: Page) -> list[float]:
    """The viewer's crosshair in RAS mm."""
    value: list[float] = page.evaluate("() => window.medverse.view.viewer.crosshairMm()")
    return value


def click_mm(page: Page, mm: list[float]) -> None:
    """Click the first 2D slice tile at the screen position of the RAS point ``mm``."""
    position: list[float] | None = page.evaluate(
        """(mm) => {
            const nv = window.medverse.view.viewer.nv;
            const pos = nv.frac2canvasPos(nv.mm2frac(mm));
            if (!pos) return null;
            const box = nv.canvas.getBoundingClientRect();
            const dpr = window.devicePixelRatio || 1;
            return [box.left + pos[0] / dpr, box.top + pos[1] / dpr];
        }""",
        mm,
    )
    assert position is not None, f"{mm} is on no slice tile"
    page.mouse.click(position[0], position[1])


def room_state(page: Page) -> dict[str, Any]:
    """The room client's document and participants as the page holds them."""
    state: dict[str, Any] = page.evaluate(
        "() => { const r = window.medverse.view.room; return {doc: r.doc, me: r.me,"
        " participants: r.participants}; }"
    )
    return state
