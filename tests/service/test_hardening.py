"""Smaller #12 points: file modes, /metrics behind a token, no framing, the dev pepper warned."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from medverse.service.app import create_app
from medverse.service.static import CSP
from tests.service.conftest import Api, TestClient, ct_files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_stored_images_and_the_sqlite_database_are_readable_by_the_owner_only(api: Api) -> None:
    answer = api.client.post("/api/studies", files=ct_files(), headers=api.clinician)
    assert answer.status_code == 201

    stored = list((api.settings.data_dir / "studies").rglob("*.dcm"))
    assert stored and {_mode(p) & 0o077 for p in stored} == {0}
    database = api.settings.data_dir / "medverse.db"
    if api.settings.database_url is None:
        assert _mode(database) & 0o077 == 0


def test_metrics_need_an_admin_token(api: Api) -> None:
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers=api.researcher).status_code == 403
    answer = api.client.get("/metrics", headers=api.admin)
    assert answer.status_code == 200 and "medverse_jobs" in answer.text


def test_no_page_may_be_framed_and_sockets_go_to_this_origin_only(api: Api) -> None:
    answer = api.client.get("/healthz")

    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    connect = next(d for d in CSP.split(";") if d.strip().startswith("connect-src")).split()
    assert "ws:" not in connect and "wss:" not in connect and "'self'" in connect


def test_the_development_pepper_is_warned_about_at_start_up(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), TestClient(create_app(api.settings)):
        pass
    assert any("public development value" in r.getMessage() for r in caplog.records)


def test_start_up_says_where_models_are_looked_for_and_warns_when_none(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), TestClient(create_app(api.settings)):
        pass
    folder = str(api.settings.models_dir.resolve())
    assert any(
        "no models found in" in r.getMessage() and folder in r.getMessage() for r in caplog.records
    )
