"""The ward view in headless Chromium: replayed beds, a live alert, an audited acknowledgement."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select

from medverse.core.settings import Settings
from medverse.icu.store import sqlite_url
from medverse.service.app import build_services
from medverse.service.auth.accounts import add_user, issue_token
from medverse.service.tables import AuditEvent
from tests.browser.conftest import Service
from tests.browser.pages import VIEWPORT
from tests.browser.seed import Seeded

pytestmark = pytest.mark.browser
NUMERICS = "physionet_icu_waveforms_wfdb/mimic_numerics_s00001/s00001-2896-10-10-00-31n"
WAVEFORM = "physionet_icu_waveforms_wfdb/mimic_waveform_s00001/3975656_0015"
CROSSING = [("8867-4", 140, "/min"), ("9279-1", 28, "/min"), ("8480-6", 88, "mm[Hg]")]


def open_ward(browser: Browser, base_url: str, token: str, ward: str) -> Page:
    page = browser.new_context(viewport=VIEWPORT).new_page()  # type: ignore[arg-type]
    page.goto(f"{base_url}/#ward={ward}")
    page.fill("#token", token)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#ward h2:has-text('(live)')", timeout=60_000)
    return page


def test_replayed_beds_live_alert_and_audited_acknowledgement(
    browser: Browser, service: Service, seeded: Seeded,
    seeded_settings: tuple[Settings, Seeded], shared_data: Path,
) -> None:  # fmt: skip
    settings = seeded_settings[0]
    db = build_services(settings).db
    add_user(db, "icu-admin", "admin")
    token = issue_token(db, "icu-admin", settings.token_pepper.get_secret_value())
    admin = {"Authorization": f"Bearer {token}"}
    for user in ("alice", "bob"):
        answer = httpx.put(f"{service.url}/api/icu/wards/ICU/members/{user}", headers=admin)
        assert answer.status_code == 200, answer.text
    store = sqlite_url(Path(settings.data_dir) / "medverse.db")
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "medverse",
            "icu",
            "replay",
            str(shared_data / NUMERICS),
            str(shared_data / WAVEFORM),
            "--speed",
            "100000",
            "--ward",
            "ICU",
            "--max-seconds",
            "600",
            "--store",
            store,
            "--assume",
            "consciousness=A",
            "--assume",
            "supplemental_oxygen=air",
            "--assume",
            "temperature=37",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip (the sync Playwright API holds this thread's event loop: replay elsewhere)
    assert replayed.returncode == 0, replayed.stderr
    alice = open_ward(browser, service.url, seeded.tokens["alice"], "ICU")
    bob = open_ward(browser, service.url, seeded.tokens["bob"], "ICU")
    for page in (alice, bob):  # the replayed beds appear as tiles
        page.wait_for_selector('.bed-tile[data-bed="ICU/s00001-2896-10-10-00-31n"]')
        page.wait_for_selector('.bed-tile[data-bed="ICU/3975656_0015"]')
    crossed_at = 0.0
    for index, (code, value, unit) in enumerate(CROSSING):
        body = {"resourceType": "Observation", "id": f"b{index}", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "effectiveDateTime": "2026-12-03T12:00:00Z",
                "valueQuantity": {"value": value, "code": unit}}  # fmt: skip
        crossed_at = time.monotonic()
        answer = httpx.post(f"{service.url}/api/icu/wards/ICU/beds/BED9/observations",
                            json=body, headers=admin)  # fmt: skip
        assert answer.status_code == 201, answer.text
    # NEWS2 9 now (pulse 3, respiration 3, systolic 3): bob sees the emergency within a second
    bob.wait_for_selector('.bed-tile[data-bed="ICU/BED9"] .ward-alert[data-level="emergency"]',
                          timeout=1000)  # fmt: skip
    assert time.monotonic() - crossed_at < 1.0
    assert "band-high" in (bob.get_attribute('.bed-tile[data-bed="ICU/BED9"]', "class") or "")
    alice.wait_for_selector('.bed-tile[data-bed="ICU/BED9"] button.ack')
    alice.click('.bed-tile[data-bed="ICU/BED9"] button.ack')
    bob.wait_for_selector('.bed-tile[data-bed="ICU/BED9"] em:has-text("acknowledged by alice")',
                          timeout=5000)  # fmt: skip
    with db.reading() as session:
        events = session.execute(select(AuditEvent).where(AuditEvent.actor == "alice")).scalars()
        assert any(e.action == "icu.alert.acknowledge" and e.outcome == "ok" for e in events)
    db.dispose()
