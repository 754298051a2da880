"""Logging set-up: one-line records (ISO 8601 UTC, or JSON lines) on stderr; never any PHI."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from medverse.core.settings import LogFormat

# Loggers that get the handler: ours, and uvicorn's (its error and access loggers are
# children of "uvicorn", so `serve` writes every line in the same format).
ROOT_LOGGERS = ("medverse", "uvicorn")
# uvicorn.access records carry (client, method, path, HTTP version, status) as their args.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def utc_timestamp(created: float) -> str:
    """A record time as ISO 8601 UTC with milliseconds, e.g. ``2026-12-03T22:15:00.123Z``."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _one_line(text: str) -> str:
    """Line breaks escaped so one record is always one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``2026-12-03T22:15:00.123Z INFO medverse.x: message``, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record (an exception's traceback goes on the same line, escaped)."""
        line = f"{utc_timestamp(record.created)} {record.levelname} {record.name}: "
        line += record.getMessage()
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info)
        return _one_line(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the request, for access)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        entry: dict[str, object] = {
            "time": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            entry.update(zip(_ACCESS_FIELDS, args, strict=True))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of the record.

    A live rich progress bar swaps ``sys.stderr`` for a proxy that prints above the bar;
    looking the stream up per record keeps log lines and bars from overwriting each other.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record to the current standard error."""
        self.stream = sys.stderr
        super().emit(record)


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of a log format."""
    return JsonFormatter() if log_format == LogFormat.JSON else TextFormatter()


def configure_logging(level: str = "INFO", log_format: LogFormat = LogFormat.TEXT) -> None:
    """Send ``medverse`` and ``uvicorn`` records to stderr as one line each (idempotent).

    Calling it again replaces the format and level (the CLI sets it up, ``serve`` again from
    its settings).

    Args:
        level: A logging level name such as ``"INFO"`` or ``"DEBUG"``.
        log_format: ``text`` (ISO 8601 UTC time, level, logger, message) or ``json`` lines.
    """
    formatter = make_formatter(log_format)
    for name in ROOT_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
            logger.removeHandler(old)
        handler = StderrHandler()
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """Return a child of the ``medverse`` logger."""
    return logging.getLogger(name if name.startswith("medverse") else f"medverse.{name}")
