"""Tokens, roles, settings secrets, the users command, and patient data kept out of the logs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from medverse.cli.main import main
from medverse.core.settings import Settings
from medverse.service.tables import ApiToken
from tests.conftest import MR_STUDY
from tests.service.conftest import Api, make_settings, open_api

T1_SERIES = MR_STUDY / "11-T1post-18670"


def test_tokens_are_stored_only_as_salted_hashes(api: Api) -> None:
    token = api.clinician["Authorization"].removeprefix("Bearer ")
    secret = token.split("_", 2)[2]

    with api.db.reading() as session:
        rows = list(session.scalars(select(ApiToken)))

    assert len(rows) == 3
    assert len({row.salt for row in rows}) == 3
    for row in rows:
        assert secret not in (row.digest, row.salt, row.id)
        assert len(row.digest) == 64  # HMAC-SHA256 hex


def test_admins_manage_users_and_a_removed_users_token_stops_working(api: Api) -> None:
    created = api.client.post(
        "/api/users", json={"name": "rita", "role": "researcher"}, headers=api.admin
    )
    token = api.client.post("/api/users/rita/tokens", headers=api.admin).json()["token"]
    rita = {"Authorization": f"Bearer {token}"}

    assert created.status_code == 201
    assert api.client.get("/api/users/me", headers=rita).json() == {
        "name": "rita",
        "role": "researcher",
    }
    assert (
        api.client.post("/api/users", json={"name": "x", "role": "admin"}, headers=rita).status_code
        == 403
    )
    assert api.client.delete("/api/users/rita", headers=api.admin).status_code == 200
    assert api.client.get("/api/users/me", headers=rita).status_code == 401


def test_settings_refuse_default_secrets_outside_development() -> None:
    with pytest.raises(ValidationError, match="MEDVERSE_TOKEN_PEPPER must be set"):
        Settings(environment="production")
    strong = "p" * 40
    with pytest.raises(ValidationError, match="well-known default password"):
        Settings(
            environment="production",
            token_pepper=strong,
            database_url="postgresql://medverse:postgres@db/medverse",
        )
    assert Settings(environment="production", token_pepper=strong).environment == "production"


def test_users_command_adds_issues_and_removes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    assert main(["users", "add", "ann", "--role", "admin", "--data-dir", data]) == 0
    assert main(["users", "token", "ann", "--data-dir", data]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["users", "add", "ann", "--role", "admin", "--data-dir", data]) == 2
    assert "user 'ann' already exists" in capsys.readouterr().err

    settings = make_settings(tmp_path, None)
    from medverse.service.db import open_database

    db = open_database(settings)
    try:
        for api in open_api(settings, db, run_worker=False):
            me = api.client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json() == {"name": "ann", "role": "admin"}
            assert main(["users", "remove", "ann", "--data-dir", data]) == 0
            me = api.client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 401
    finally:
        db.dispose()


@contextmanager
def _all_log_records() -> Iterator[list[str]]:
    """Every log record of the process, whatever handlers are configured."""
    lines: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    grab = Grab(level=logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("medverse"), logging.getLogger("uvicorn")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(grab)
        logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(grab)
            logger.setLevel(level)


def _identified_mr_series() -> list[tuple[str, tuple[str, bytes, str]]]:
    """The T1 series without its 'identity removed' marks: names and IDs as a hospital's."""
    files = []
    for path in sorted(T1_SERIES.iterdir()):
        ds = pydicom.dcmread(path)
        for keyword in ("PatientIdentityRemoved", "DeidentificationMethod"):
            delattr(ds, keyword)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(("files", (path.name, buffer.getvalue(), "application/dicom")))
    return files


def test_no_patient_name_or_id_reaches_the_log_or_the_research_copy(api: Api) -> None:
    first = pydicom.dcmread(next(T1_SERIES.iterdir()), stop_before_pixels=True)
    name, patient_id = str(first.PatientName), str(first.PatientID)
    assert name and patient_id  # the sample does carry (fictional) identity
    files = _identified_mr_series()

    with _all_log_records() as lines:
        study = api.client.post("/api/studies", files=files, headers=api.clinician).json()
        refused = api.client.get(f"/api/studies/{study['id']}", headers=api.researcher)
        copy_id = study["deidentified_study_id"]
        copy = api.client.get(f"/api/studies/{copy_id}", headers=api.researcher)
        api.client.post(
            "/api/studies", files=[*files, ("files", ("x.bin", b"junk" * 100, "x/y"))],
            headers=api.clinician,
        )  # fmt: skip

    assert (study["identified"], refused.status_code, copy.status_code) == (True, 404, 200)
    assert any(study["id"] in line for line in lines)  # the log does speak about the study
    text = "\n".join(lines)
    for secret in (name, patient_id, *name.split("^")):
        assert secret not in text
        assert secret not in copy.text
    stored = list((api.settings.data_dir / "studies" / copy_id).rglob("*.dcm"))
    assert len(stored) == 22
    for path in stored:
        raw = path.read_bytes()
        assert name.split("^")[1].encode() not in raw and patient_id.encode() not in raw
