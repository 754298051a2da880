"""Study, user and room strings are shown as text, never run as HTML, for every role."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from medverse.core.settings import Settings
from tests.browser.conftest import Service
from tests.browser.pages import LOAD_TIMEOUT_MS, VIEWPORT, click_mm, crosshair
from tests.browser.payload import LINK, MODALITY, SERIES, admin_token, upload, write_payload_series
from tests.browser.seed import Seeded

pytestmark = pytest.mark.browser
NOTE = f'{LINK}<img src=x onerror="window.__pwned=1">'
# Elements the app itself never makes: any of them on the page came from data parsed as HTML.
FOREIGN = "img, a, svg, iframe, i, u, s, script:not([src^='/assets/'])"


@pytest.fixture(scope="module")
def payload(
    service: Service,
    seeded: Seeded,
    seeded_settings: tuple[Settings, Seeded],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """The payload study uploaded by alice: its id, its de-identified copy's, an admin token."""
    folder = tmp_path_factory.mktemp("payload")
    study = upload(service.url, seeded.tokens["alice"], write_payload_series(folder))
    return {
        "identified": str(study["id"]),
        "deidentified": str(study["deidentified_study_id"]),
        "admin": admin_token(seeded_settings[0]),
    }


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    yield context.new_page()
    context.close()


def sign_in(page: Page, base_url: str, token: str, errors: list[str]) -> None:
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base_url)
    assert not page.locator("#side").is_visible(), "the viewer's sidebar shows on sign-in"
    page.fill("#token", token)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#studies:not([hidden])", timeout=LOAD_TIMEOUT_MS)
    assert not page.locator("#side").is_visible(), "the viewer's sidebar shows on the list"


def assert_nothing_parsed(page: Page) -> None:
    foreign = page.evaluate(
        f"() => [...document.querySelectorAll({FOREIGN!r})].map(e => e.outerHTML)"
    )
    assert foreign == [], foreign
    assert page.evaluate("() => window.__pwned") is None


@pytest.mark.parametrize("role", ["admin", "clinician", "researcher"])
def test_payload_tags_show_as_literal_text_in_list_viewer_and_room(
    page: Page, service: Service, seeded: Seeded, payload: dict[str, str], role: str
) -> None:
    token = {"admin": payload["admin"], "clinician": seeded.tokens["alice"]}.get(
        role, seeded.tokens["rita"]
    )
    study_id = payload["deidentified" if role == "researcher" else "identified"]
    errors: list[str] = []
    sign_in(page, service.url, token, errors)
    row = page.locator(f"#study-rows tr[data-study='{study_id}']")
    row.wait_for()
    text = row.inner_text()
    assert MODALITY in text, text
    if role == "researcher":  # de-identification blanks the series description
        assert "(no description)" in text, text
        assert page.locator(f"#study-rows tr[data-study='{payload['identified']}']").count() == 0
    else:
        assert SERIES in text, text
    assert_nothing_parsed(page)

    row.locator("button.open").click()
    page.wait_for_function("() => window.medverse?.view?.loaded === true", timeout=LOAD_TIMEOUT_MS)
    assert MODALITY in page.locator("#study-title").inner_text()
    page.click("#tools button[data-tool=comment]")
    page.fill("#note", NOTE)
    click_mm(page, crosshair(page))
    shown = page.locator("#annotations li[data-kind=comment] .text").last
    shown.wait_for()
    assert NOTE in shown.inner_text()
    assert_nothing_parsed(page)
    assert not errors, errors


def test_long_words_wrap_in_the_annotation_list(
    page: Page, service: Service, seeded: Seeded
) -> None:
    errors: list[str] = []
    sign_in(page, service.url, seeded.tokens["bob"], errors)
    page.locator(f"#study-rows tr[data-study='{seeded.study_id}'] button.open").click()
    page.wait_for_function("() => window.medverse?.view?.loaded === true", timeout=LOAD_TIMEOUT_MS)
    page.click("#tools button[data-tool=landmark]")
    word = "pneumonoultramicroscopicsilicovolcanoconiosis" * 6
    page.fill("#note", word)
    click_mm(page, crosshair(page))
    item = page.locator(f"#annotations li:has-text('{word[:40]}')").last
    item.wait_for()
    widths = page.evaluate(
        "() => { const s = document.querySelector('#side');"
        " return [s.scrollWidth, s.clientWidth]; }"
    )
    assert widths[0] <= widths[1] + 1, f"the sidebar scrolls sideways: {widths}"
    box, side = item.bounding_box(), page.locator("#side").bounding_box()
    assert box is not None and side is not None
    assert box["x"] + box["width"] <= side["x"] + side["width"] + 1
    assert not errors, errors


def test_study_list_shows_modality_date_uploader_and_each_series(
    page: Page, service: Service, seeded: Seeded
) -> None:
    errors: list[str] = []
    sign_in(page, service.url, seeded.tokens["alice"], errors)
    row = page.locator(f"#study-rows tr[data-study='{seeded.study_id}']")
    row.wait_for()
    text = row.inner_text()
    assert re.search(r"\b20\d\d-\d\d-\d\d \d\d:\d\d UTC\b", text), text
    assert "uploaded by alice" in text and "identified" in text
    series = row.locator(".series-line").all_inner_texts()
    assert len(series) == 1 and series[0].startswith("CT · "), series
    assert "20 images · 512×512" in series[0], series
    assert not errors, errors


@pytest.mark.parametrize("role", ["admin", "clinician", "researcher"])
def test_study_list_shows_the_patient_to_clinical_roles_only_with_date_and_description(
    page: Page, service: Service, seeded: Seeded, payload: dict[str, str], role: str
) -> None:
    token = {"admin": payload["admin"], "clinician": seeded.tokens["alice"]}.get(
        role, seeded.tokens["rita"]
    )
    errors: list[str] = []
    sign_in(page, service.url, token, errors)
    study_id = payload["deidentified" if role == "researcher" else "identified"]
    row = page.locator(f"#study-rows tr[data-study='{study_id}']")
    row.wait_for()
    patients = page.locator("#study-rows .patient").all_inner_texts()
    if role == "researcher":
        assert patients == [], patients
        assert "Evil" not in page.locator("#studies").inner_text()
    else:  # the payload's PatientName "<b>Evil^<a href=//ev.il>" and its PatientID, as text
        assert row.locator(".patient").inner_text() == f"<b>Evil, {LINK} · ID <svg onload=alert(1)>"
        assert row.locator(".study-line").inner_text() == f"2022-12-08 · {LINK}study</a>"
        plain = page.locator(f"#study-rows tr[data-study='{seeded.study_id}']")
        assert plain.locator(".patient").count() == 0  # the sample CT names no patient
        assert plain.locator(".study-line").inner_text() == "2022-12-08 · (no study description)"
    assert row.locator("b").first.inner_text() == MODALITY  # one modality, one series
    assert_nothing_parsed(page)
    assert not errors, errors
