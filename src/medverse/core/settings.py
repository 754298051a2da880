"""Settings: one validated object, the only place ``MEDVERSE_*`` environment variables are read."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The token pepper a development install starts with; refused outside development.
DEVELOPMENT_TOKEN_PEPPER = "medverse-development-pepper-not-secret"
_WEAK_PASSWORDS = frozenset({"", "postgres", "password", "medverse", "changeme", "admin", "secret"})


class DeviceChoice(StrEnum):
    """Where computation runs."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class LogFormat(StrEnum):
    """How log records are written: one text line each, or one JSON object per line."""

    TEXT = "text"
    JSON = "json"


class Environment(StrEnum):
    """Where the service runs: development accepts the built-in secrets, production does not."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LoggingSettings(BaseSettings):
    """How the process logs, read from ``MEDVERSE_LOG_LEVEL`` and ``MEDVERSE_LOG_FORMAT``.

    Every command reads these before anything else, so they stand apart from the service's
    settings (which refuse some values outside development).

    Attributes:
        log_level: Python logging level name.
        log_format: ``text`` (``2026-12-03T22:15:00.123Z INFO medverse.x: message``) or
            ``json`` (one JSON object per line, for log shippers).
    """

    model_config = SettingsConfigDict(env_prefix="MEDVERSE_", extra="ignore")

    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT


class Settings(LoggingSettings):
    """medverse settings, read from ``MEDVERSE_*`` environment variables.

    Attributes:
        data_dir: Where the service keeps its database and stored studies.
        models_dir: Folder searched for model checkpoints by name.
        device: ``auto`` uses CUDA when present, else the CPU.
        log_level: Python logging level name.
        log_format: ``text`` or ``json`` lines (see :class:`LoggingSettings`).
        num_threads: CPU threads for torch (0 keeps torch's default).
        environment: ``development`` (default) or ``production``; production refuses the
            built-in token pepper and empty or well-known database passwords.
        database_url: SQLAlchemy URL of the service database; None means a SQLite file
            ``<data_dir>/medverse.db``. ``postgresql+psycopg://user:pw@host/db`` (or
            ``postgresql://...``) uses PostgreSQL.
        max_upload_bytes: Largest accepted upload request body (413 above it).
        max_archive_entries: Most files a zip upload may hold.
        max_archive_bytes: Most bytes a zip upload may unpack to in total.
        max_compression_ratio: Highest uncompressed/compressed ratio of one zip entry.
        token_pepper: Server-side secret mixed into every API-token hash (HMAC key).
        max_attempts: Runs a job gets (worker lost or crashed) before it is failed.
        lease_seconds: How long a worker's claim on a job lasts without a heartbeat.
        heartbeat_seconds: How often a worker renews its lease (below ``lease_seconds``).
        poll_seconds: How often an idle worker looks for queued jobs.
        pacs_url: DICOMweb root of the PACS (``https://pacs/dicom-web``); None: no PACS.
        pacs_username: User for HTTP basic authentication to the PACS (None: none).
        pacs_password: Password for HTTP basic authentication to the PACS.
        pacs_timeout_seconds: How long one PACS request may take before it is given up (504).
        pacs_max_study_bytes: Most bytes a study retrieved from the PACS may hold.
    """

    model_config = SettingsConfigDict(env_prefix="MEDVERSE_", extra="ignore")

    data_dir: Path = Field(default=Path.home() / ".medverse")
    models_dir: Path = Field(default=Path("models"))
    device: DeviceChoice = DeviceChoice.AUTO
    num_threads: int = Field(default=0, ge=0)
    environment: Environment = Environment.DEVELOPMENT
    database_url: str | None = None
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_archive_entries: int = Field(default=50_000, gt=0)
    max_archive_bytes: int = Field(default=8 * 1024**3, gt=0)
    max_compression_ratio: float = Field(default=200.0, gt=1.0)
    token_pepper: SecretStr = SecretStr(DEVELOPMENT_TOKEN_PEPPER)
    max_attempts: int = Field(default=3, ge=1)
    lease_seconds: float = Field(default=60.0, gt=0)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    pacs_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    pacs_username: str | None = None
    pacs_password: SecretStr | None = None
    pacs_timeout_seconds: float = Field(default=30.0, gt=0)
    pacs_max_study_bytes: int = Field(default=8 * 1024**3, gt=0)

    @model_validator(mode="after")
    def _check_service(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        if self.environment == Environment.DEVELOPMENT:
            return self
        pepper = self.token_pepper.get_secret_value()
        if pepper == DEVELOPMENT_TOKEN_PEPPER or len(pepper) < 32:
            raise ValueError(
                "MEDVERSE_TOKEN_PEPPER must be set to a random secret of at least 32 characters "
                "outside development (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        if self.database_url and urlsplit(self.database_url).scheme.startswith("postgres"):
            password = urlsplit(self.database_url).password  # None: peer or certificate auth
            if password is not None and password.lower() in _WEAK_PASSWORDS:
                raise ValueError("the database URL has an empty or well-known default password")
        return self


def load_settings() -> Settings:
    """Read settings from the environment now (never at import time)."""
    return Settings()
