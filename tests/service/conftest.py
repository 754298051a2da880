"""Service fixtures: SQLite and a real PostgreSQL, users with tokens, the CT, a tiny model."""

from __future__ import annotations

import io
import shutil
import uuid
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette 1.3 asks for httpx2; httpx 0.28 is what is pinned
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from medverse.core.settings import Settings
from medverse.service.app import create_app
from medverse.service.auth.accounts import add_user, issue_token
from medverse.service.db import Database, open_database
from medverse.service.tables import Study
from tests.conftest import CT_SERIES
from tests.service import postgres

BACKENDS = ["sqlite", "postgresql"]
MODEL = "ct_tiny"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One PostgreSQL server for the session (skipped only if the binaries are absent)."""
    if not postgres.available():
        pytest.skip(f"PostgreSQL server binaries not found in {postgres.BIN}")
    server = postgres.start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: postgres.PostgresServer) -> str:
    """One database of the session's server; every test empties it first."""
    return postgres_server.create_database()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None (SQLite file in the data dir) or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return None
    server: postgres.PostgresServer = request.getfixturevalue("postgres_server")
    return server.empty_database(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """unet_small fitted for 10 steps to the CT's spleen and liver at 12 mm (a few seconds)."""
    from tests.inference.helpers import ct_plan, fit_checkpoint, read_ct

    ct, labels = read_ct()
    plan = ct_plan((12.0, 12.0, 12.0)).model_copy(update={"patch_size": (48, 48, 8)})
    path = tmp_path_factory.mktemp("models") / f"{MODEL}.pt"
    return fit_checkpoint(ct, labels, plan, path, steps=10, lr=1e-2)


def make_settings(tmp_path: Path, database_url: str | None, **overrides: object) -> Settings:
    """Test settings: short leases and polls, a 10 MB upload limit."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "models_dir": tmp_path / "models",
        "database_url": database_url,
        "device": "cpu",
        "max_upload_bytes": 10_000_000,
        "lease_seconds": 5.0,
        "heartbeat_seconds": 0.5,
        "poll_seconds": 0.1,
        "max_attempts": 2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    """Settings on the parametrised backend, with an empty models folder."""
    (tmp_path / "models").mkdir()
    return make_settings(tmp_path, database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """The service database of ``settings`` (schema created)."""
    database = open_database(settings)
    yield database
    database.dispose()


def insert_study(db: Database) -> str:
    """A bare de-identified study row (for job-store tests that need no files)."""
    study_id = str(uuid.uuid4())
    with db.writing() as session:
        session.add(
            Study(id=study_id, study_uid=f"2.25.{uuid.uuid4().int}", kind="dicom",
                  identified=False, created_by="test")
        )  # fmt: skip
    return study_id


@dataclass
class Api:
    """A running app and one bearer header per role."""

    client: TestClient
    settings: Settings
    db: Database
    admin: dict[str, str]
    clinician: dict[str, str]
    researcher: dict[str, str]


def add_token(db: Database, settings: Settings, name: str, role: str) -> dict[str, str]:
    """Create a user and return its Authorization header."""
    add_user(db, name, role)
    token = issue_token(db, name, settings.token_pepper.get_secret_value())
    return {"Authorization": f"Bearer {token}"}


def open_api(settings: Settings, db: Database, *, run_worker: bool) -> Iterator[Api]:
    """Start the app (lifespan included) with one user per role."""
    headers = {
        role: add_token(db, settings, f"{role}-1", role)
        for role in ("admin", "clinician", "researcher")
    }
    with TestClient(create_app(settings, run_worker=run_worker)) as client:
        yield Api(client, settings, db, **headers)


@pytest.fixture
def api(settings: Settings, db: Database) -> Iterator[Api]:
    """The app without a worker (jobs stay queued)."""
    yield from open_api(settings, db, run_worker=False)


@pytest.fixture
def tiny_model(settings: Settings, tiny_checkpoint: Path) -> None:
    """Install the tiny CT model in the models folder as ``ct_tiny``."""
    shutil.copy(tiny_checkpoint, settings.models_dir / tiny_checkpoint.name)


@pytest.fixture
def api_with_worker(settings: Settings, db: Database, tiny_model: None) -> Iterator[Api]:
    """The app with its in-process worker and the tiny CT model installed."""
    yield from open_api(settings, db, run_worker=True)


@pytest.fixture
def sockets() -> Iterator[ExitStack]:
    """Closes every socket a test opened, also when it fails (else the app cannot stop)."""
    with ExitStack() as stack:
        yield stack


def ct_files() -> list[tuple[str, tuple[str, bytes, str]]]:
    """The real CT series as multipart ``files`` fields."""
    return [
        ("files", (p.name, p.read_bytes(), "application/dicom"))
        for p in sorted(CT_SERIES.iterdir())
    ]


def zip_of(entries: dict[str, bytes]) -> bytes:
    """A deflated zip holding ``entries``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def ct_zip() -> bytes:
    """The real CT series in one zip (inside a folder, as exports usually are)."""
    return zip_of({f"export/CT/{p.name}": p.read_bytes() for p in sorted(CT_SERIES.iterdir())})
