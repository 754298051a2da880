"""Settings: one validated object, the only place ``MEDVERSE_*`` environment variables are read."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeviceChoice(StrEnum):
    """Where computation runs."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Settings(BaseSettings):
    """medverse settings, read from ``MEDVERSE_*`` environment variables.

    Attributes:
        data_dir: Where the service keeps its database and stored studies.
        models_dir: Folder searched for model checkpoints by name.
        device: ``auto`` uses CUDA when present, else the CPU.
        log_level: Python logging level name.
        num_threads: CPU threads for torch (0 keeps torch's default).
    """

    model_config = SettingsConfigDict(env_prefix="MEDVERSE_", extra="ignore")

    data_dir: Path = Field(default=Path.home() / ".medverse")
    models_dir: Path = Field(default=Path("models"))
    device: DeviceChoice = DeviceChoice.AUTO
    log_level: str = "INFO"
    num_threads: int = Field(default=0, ge=0)


def load_settings() -> Settings:
    """Read settings from the environment now (never at import time)."""
    return Settings()
