"""The viewer and shared rooms in headless Chromium against a real ``medverse serve``."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page

from medverse.core.registry import label_color
from tests.browser.conftest import Service
from tests.browser.pages import click_mm, crosshair, open_viewer, room_state
from tests.browser.seed import Seeded

pytestmark = pytest.mark.browser


def labels_of(service: Service, seeded: Seeded) -> list[dict[str, object]]:
    headers = {"Authorization": f"Bearer {seeded.tokens['alice']}"}
    answer = httpx.get(f"{service.url}/api/viewer/jobs/{seeded.job_id}/labels", headers=headers)
    structures: list[dict[str, object]] = answer.json()["structures"]
    return structures


def canvas_pixels(page: Page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#gl").screenshot())).convert("RGB"))


Opener = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, service: Service) -> Iterator[Opener]:
    """Opens signed-in viewer pages; closes them at the end whatever happens (they leave)."""
    opened: list[BrowserContext] = []

    def opener(token: str, study_id: str, *, emulate_xr: bool = False) -> Page:
        context, page = open_viewer(browser, service.url, token, study_id, emulate_xr=emulate_xr)
        opened.append(context)
        return page

    yield opener
    for context in opened:
        context.close()


def colour_hits(pixels: np.ndarray, structures: list[dict[str, object]]) -> dict[str, int]:
    """Pixels per structure whose hue (colour minus grey) points the way of its label colour."""
    rgb = pixels.reshape(-1, 3).astype(float)
    chroma = rgb - rgb.mean(axis=1, keepdims=True)
    strength = np.linalg.norm(chroma, axis=1)
    hits = {}
    for s in structures:
        target = np.array(s["color"], dtype=float)
        direction = target - target.mean()
        direction /= np.linalg.norm(direction) + 1e-9
        cosine = (chroma @ direction) / (strength + 1e-9)
        hits[str(s["name"])] = int(((cosine > 0.97) & (strength > 25)).sum())
    return hits


def test_viewer_shows_the_ct_with_its_segmentation_overlay(
    open_page: Opener, service: Service, seeded: Seeded, tmp_path: Path
) -> None:
    page = open_page(seeded.tokens["alice"], seeded.study_id)
    structures = labels_of(service, seeded)
    names = [s["name"] for s in structures]
    assert "liver" in names and "spleen" in names
    listed = page.locator("#labels li[data-label]").all_inner_texts()
    assert len(listed) == len(structures) and any("liver" in t for t in listed)
    liver = next(s for s in structures if s["name"] == "liver")
    assert tuple(liver["color"]) == label_color(int(liver["value"]), "liver")  # type: ignore[arg-type]
    page.evaluate(
        "(mm) => { const v = window.medverse.view.viewer; v.setCrosshairMm(mm);"
        " v.nv.drawScene(); v.nv.gl.finish(); }",
        liver["centroid_mm"],
    )
    page.wait_for_timeout(500)
    page.screenshot(path=str(tmp_path / "viewer.png"))  # never over docs/viewer.png
    with_overlay = canvas_pixels(page)
    assert with_overlay.std() > 20, "the viewer canvas is blank"
    shown = colour_hits(with_overlay, structures)
    coloured = [name for name, count in shown.items() if count > 300]
    assert "liver" in coloured and len(coloured) >= 3, shown

    # Hide every structure: their colours leave the slices (organ meshes stay in 3D).
    page.uncheck("#all-labels")
    page.wait_for_function("() => !document.querySelector('#all-labels').checked")
    page.evaluate(
        "() => { const nv = window.medverse.view.viewer.nv; nv.drawScene(); nv.gl.finish(); }"
    )
    page.wait_for_timeout(500)
    hidden = colour_hits(canvas_pixels(page), structures)
    assert hidden["liver"] < shown["liver"] / 3, (shown, hidden)

    # No XR device in this browser: the immersive buttons are disabled and say why.
    assert page.locator("#enter-vr").is_disabled() and page.locator("#enter-ar").is_disabled()
    reason = page.locator("#xr-reason").inner_text()
    assert "unsupported" in reason or "WebXR" in reason, reason
    assert "VR" in (page.locator("#enter-vr").get_attribute("title") or "")


def test_two_users_share_comments_and_follow_the_presenter(
    open_page: Opener, service: Service, seeded: Seeded
) -> None:
    a = open_page(seeded.tokens["alice"], seeded.study_id)
    b = open_page(seeded.tokens["bob"], seeded.study_id)
    a.wait_for_selector("#participants li[data-participant=bob]")
    assert b.locator("#participants li[data-participant=alice]").count() == 1
    colours = {p["name"]: p["color"] for p in room_state(b)["participants"]}
    assert colours["alice"] != colours["bob"]

    spleen = next(s for s in labels_of(service, seeded) if s["name"] == "spleen")
    a.click("#tools button[data-tool=comment]")
    a.fill("#note", "check the splenic hilum")
    started = time.monotonic()
    click_mm(a, spleen["centroid_mm"])  # type: ignore[arg-type]
    b.wait_for_selector("#annotations li[data-kind=comment] >> text=check the splenic hilum")
    waited = time.monotonic() - started
    # Click in A's page to the comment in B's list, on the pages' own clocks (one machine):
    # what the app takes, without the test driver's polling of two busy software-GL pages.
    made = a.evaluate("() => Object.entries(window.medverse.view.madeAt)")
    assert len(made) == 1
    annotation_id, clicked_at = made[0]
    shown_at = b.evaluate(f"() => window.medverse.view.shownAt[{json.dumps(annotation_id)}]")
    latency_ms = shown_at - clicked_at
    print(
        f"comment click in A -> shown in B: {latency_ms:.0f} ms "
        f"(the driver saw it after {waited:.2f} s)"
    )
    # Live means well under a few seconds on software GL sharing 2 cores with the suite (1.9 s
    # seen in CI); the fan-out itself is measured by benchmarks/bench_rooms.py (p99 14 ms).
    assert 0 < latency_ms < 5000
    # The driver's own polling of two software-GL pages is bounded only loosely: on a loaded
    # 2-core box it has taken 8 s while the pages' clocks said 41 ms.
    assert waited < 30
    pinned = room_state(b)["doc"]["annotations"][-1]
    assert pinned["author"] == "alice" and pinned["color"] == colours["alice"]
    assert np.allclose(pinned["points"][0], crosshair(a), atol=0.01)
    assert np.allclose(pinned["points"][0][:2], spleen["centroid_mm"][:2], atol=15)  # type: ignore[index]

    a.click("#present")
    b.wait_for_selector("#presenter >> text=presenter: alice")
    b.check("#follow")
    a.click("#tools button[data-tool=navigate]")
    before = crosshair(b)
    liver = next(s for s in labels_of(service, seeded) if s["name"] == "liver")
    click_mm(a, liver["centroid_mm"])  # type: ignore[arg-type]
    target = crosshair(a)
    assert np.linalg.norm(np.subtract(target, before)) > 5
    b.wait_for_function(
        "(t) => window.medverse.view.viewer.crosshairMm()"
        ".every((v, i) => Math.abs(v - t[i]) < 0.5)",
        arg=target,
        # A follower that never moves fails here; how fast it moves is the pages' business
        # (measured above for comments): the driver's polling of two software-GL pages on a
        # loaded 2-core box has taken more than 2 s (CI, stop 22).
        timeout=30_000,
    )


def test_annotations_survive_a_service_restart(
    open_page: Opener, service: Service, seeded: Seeded
) -> None:
    a = open_page(seeded.tokens["alice"], seeded.study_id)
    a.click("#tools button[data-tool=landmark]")
    a.fill("#note", "restart marker")
    click_mm(a, crosshair(a))
    a.wait_for_selector("#annotations li[data-kind=landmark] >> text=restart marker")
    before = room_state(a)["doc"]
    a.context.close()

    service.restart()
    b = open_page(seeded.tokens["bob"], seeded.study_id)
    after = room_state(b)["doc"]
    assert after["version"] == before["version"]
    assert after["annotations"] == before["annotations"]
    assert b.locator("#annotations li[data-kind=landmark] >> text=restart marker").count() == 1


def xr_state(page: Page) -> dict[str, object]:
    state: dict[str, object] = json.loads(page.locator("#status").get_attribute("data-xr") or "{}")
    return state


def test_webxr_session_with_an_emulated_headset(
    open_page: Opener, service: Service, seeded: Seeded
) -> None:
    page = open_page(seeded.tokens["alice"], seeded.study_id, emulate_xr=True)
    page.wait_for_function("() => !document.querySelector('#enter-vr').disabled")
    assert page.locator("#enter-ar").is_enabled()
    page.click("#enter-vr")
    page.wait_for_function("() => window.medverse.view.xr.state.frames > 5", timeout=10_000)
    state = page.evaluate("() => window.medverse.view.xr.state")
    assert state["presenting"] and state["mode"] == "immersive-vr"
    liver = next(s for s in labels_of(service, seeded) if s["name"] == "liver")
    assert state["organs"] == len(labels_of(service, seeded))  # one mesh per structure
    # life size: the meshes span tens of centimetres (1 mm in the volume = 1 mm in the room)
    assert 0.15 < max(state["organSizeM"]) < 0.6, state
    annotations = room_state(page)["doc"]["annotations"]
    assert state["markers"] >= 2 * len(annotations) > 0  # a ball and a label per annotation
    assert liver["volume_ml"] > 0

    start = state["sliceIndex"]
    page.evaluate("() => { const s = window.__xrEmulation.sessions[0]; s.connectController(); }")
    page.wait_for_timeout(100)
    page.evaluate("() => window.__xrEmulation.sessions[0].press('selectstart')")
    page.evaluate("() => { window.__xrEmulation.controller.y += 0.02; }")  # raise the hand 2 cm
    page.wait_for_function(f"() => window.medverse.view.xr.state.sliceIndex !== {start}")
    page.evaluate("() => window.__xrEmulation.sessions[0].press('selectend')")
    moved = page.evaluate("() => window.medverse.view.xr.state.sliceIndex")
    assert moved > start

    page.evaluate("() => window.medverse.view.xr.exit()")
    page.wait_for_function("() => window.medverse.view.xr.state.presenting === false")
