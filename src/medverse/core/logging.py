"""Logging set-up: one rich handler on stderr; messages never carry patient names or IDs."""

from __future__ import annotations

import logging

from rich.logging import RichHandler


def configure_logging(level: str = "INFO") -> None:
    """Send ``medverse`` log records to stderr through rich, once per process.

    Args:
        level: A logging level name such as ``"INFO"`` or ``"DEBUG"``.
    """
    logger = logging.getLogger("medverse")
    if any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.setLevel(level)
        return
    handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """Return a child of the ``medverse`` logger."""
    return logging.getLogger(name if name.startswith("medverse") else f"medverse.{name}")
