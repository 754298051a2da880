"""Orientation letters against the CT's anatomy, view sizes at physical aspect, hidden sidebar."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page

from tests.browser.conftest import Service
from tests.browser.pages import LOAD_TIMEOUT_MS, VIEWPORT
from tests.browser.seed import Seeded

pytestmark = pytest.mark.browser
AXIAL, CORONAL, SAGITTAL, RENDER = 0, 1, 2, 4


@pytest.fixture
def page(browser: Browser, service: Service, seeded: Seeded) -> Iterator[Page]:
    """The seeded CT open for bob (his page leaves the room even when opening fails)."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    try:
        opened = context.new_page()
        opened.goto(f"{service.url}/#study={seeded.study_id}")
        opened.fill("#token", seeded.tokens["bob"])
        opened.click("#signin-form button[type=submit]")
        loaded = "() => window.medverse?.view?.loaded === true"
        opened.wait_for_function(loaded, timeout=LOAD_TIMEOUT_MS)
        yield opened
    finally:
        context.close()


def tiles(page: Page) -> list[dict[str, Any]]:
    """NiiVue's drawn views in CSS pixels: slice type, [left, top, width, height], fov mm."""
    found: list[dict[str, Any]] = page.evaluate(
        """() => { const nv = window.medverse.view.viewer.nv; nv.drawScene();
            const k = nv.canvas.width / nv.canvas.clientWidth;
            return nv.screenSlices.map(t => ({type: t.axCorSag,
                box: t.leftTopWidthHeight.map(v => v / k), fov: t.fovMM})); }"""
    )
    return found


def letters(page: Page) -> dict[int, dict[str, str]]:
    page.wait_for_function("() => window.medverse.view.viewer.orientationLabels().length >= 12")
    labels = page.evaluate("() => window.medverse.view.viewer.orientationLabels()")
    by_view: dict[int, dict[str, str]] = {}
    for label in labels:
        by_view.setdefault(label["view"], {})[label["edge"]] = label["letter"]
    return by_view


def liver_side(page: Page) -> float:
    """Where the liver's overlay colour lies across the axial view: 0 screen left, 1 right."""
    liver_value = page.evaluate(
        "() => window.medverse.view.labels.find(s => s.name === 'liver').value"
    )
    color = page.evaluate(
        "(v) => window.medverse.view.labels.find(s => s.value === v).color", liver_value
    )
    page.evaluate("() => { const v = window.medverse.view.viewer; v.nv.drawScene(); }")
    page.wait_for_timeout(300)
    axial = next(t for t in tiles(page) if t["type"] == AXIAL)
    left, top, width, height = (round(v) for v in axial["box"])
    shot = Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB")
    pixels = np.asarray(shot, dtype=float)[top : top + height, left : left + width]
    chroma = pixels - pixels.mean(axis=2, keepdims=True)
    target = np.array(color, dtype=float) - np.mean(color)
    target /= np.linalg.norm(target)
    strength = np.linalg.norm(chroma, axis=2)
    hits = ((chroma @ target) / (strength + 1e-9) > 0.97) & (strength > 25)
    assert hits.sum() > 300, "the liver is not on the axial view"
    return float(np.nonzero(hits)[1].mean() / width)


def test_radiological_by_default_with_letters_that_match_the_anatomy(page: Page) -> None:
    liver = page.evaluate(
        "() => window.medverse.view.labels.find(s => s.name === 'liver').centroid_mm"
    )
    page.evaluate("(mm) => window.medverse.view.viewer.setCrosshairMm(mm)", liver)
    shown = letters(page)
    assert shown[AXIAL] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert shown[CORONAL] == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert shown[SAGITTAL]["top"] == "S" and shown[SAGITTAL]["right"] == "A"
    assert "left on screen right" in page.locator("#convention-caption").inner_text()
    # The liver is in the patient's right: under the letter R, on the screen's left.
    assert liver_side(page) < 0.45

    page.select_option("#convention", "neurological")
    page.wait_for_function(
        "() => window.medverse.view.viewer.orientationLabels()"
        ".some(l => l.view === 0 && l.edge === 'left' && l.letter === 'L')"
    )
    assert letters(page)[AXIAL] == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    assert "left on screen left" in page.locator("#convention-caption").inner_text()
    assert liver_side(page) > 0.55


def test_slab_views_get_room_at_their_physical_aspect(page: Page) -> None:
    canvas = page.locator("#gl").bounding_box()
    assert canvas is not None
    drawn = {t["type"]: t for t in tiles(page)}
    assert set(drawn) == {AXIAL, CORONAL, SAGITTAL, RENDER}
    for kind in (CORONAL, SAGITTAL):
        box, fov = drawn[kind]["box"], drawn[kind]["fov"]
        physical = abs(fov[0] / fov[1])  # the fov is signed (negative x when mirrored)
        assert abs((box[2] / box[3]) / physical - 1) < 0.05, (kind, box, fov)
        assert box[2] > 0.85 * canvas["width"], f"view {kind} is {box[2]:.0f} px wide"
        assert box[3] > 60, f"view {kind} is a {box[3]:.0f} px strip"
    render = drawn[RENDER]["box"]
    assert render[2] * render[3] > 0.25 * canvas["width"] * canvas["height"]


def test_crosshair_is_a_hairline_on_every_slice(page: Page) -> None:
    page.uncheck("#all-labels")  # no overlay colours: red on the slices is the crosshair
    page.evaluate("() => window.medverse.view.viewer.nv.drawScene()")
    page.wait_for_timeout(300)
    shot = np.asarray(
        Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB"), dtype=int
    )
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    red = (r > 140) & (r - g > 60) & (r - b > 60)
    for tile in tiles(page):
        if tile["type"] == RENDER:
            continue
        left, top, width, height = (round(v) for v in tile["box"])
        # Two columns near the tile's sides cross the horizontal line; at most one the vertical.
        counts = [
            int(red[top : top + height, x].sum())
            for x in (left + width // 20, left + width - width // 20)
        ]
        assert 0 < min(counts) <= 3, f"view {tile['type']}: crosshair {counts} px thick"
