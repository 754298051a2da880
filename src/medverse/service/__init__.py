"""The medverse service: FastAPI app, job store and workers (``create_app(settings)``)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """Import ``create_app`` on first use, so importing a submodule stays light."""
    if name == "create_app":
        from medverse.service.app import create_app

        return create_app
    raise AttributeError(f"module 'medverse.service' has no attribute {name!r}")
