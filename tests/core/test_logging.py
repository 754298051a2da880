"""Log records: one line each, ISO 8601 UTC time, or JSON lines; parseable by log tooling."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator

import pytest

from medverse.core.logging import ROOT_LOGGERS, StderrHandler, configure_logging, get_logger
from medverse.core.settings import LogFormat

TEXT_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .*$"
)


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What went to standard error (the handler writes to the current ``sys.stderr``).

    The loggers' handlers, levels and propagation are restored afterwards.
    """
    loggers = [logging.getLogger(name) for name in ROOT_LOGGERS]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield lambda: capsys.readouterr().err
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_a_long_record_with_line_breaks_is_one_text_line(stderr: Callable[[], str]) -> None:
    configure_logging("INFO", LogFormat.TEXT)
    message = "study stored: " + "x" * 300 + "\nsecond line"
    get_logger("medverse.service.studies").info("%s", message)

    lines = stderr().splitlines()
    assert len(lines) == 1  # never wrapped at 80 columns, a line break escaped
    assert TEXT_LINE.match(lines[0]), lines[0]
    assert lines[0].endswith(" INFO medverse.service.studies: " + message.replace("\n", "\\n"))


def test_json_lines_carry_time_level_logger_and_access_fields(
    stderr: Callable[[], str],
) -> None:
    configure_logging("INFO", LogFormat.JSON)
    get_logger("jobs").warning("job %s retried", "abc")
    access = ("127.0.0.1:5000", "GET", "/healthz", "1.1", 200)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', *access)

    first, second = (json.loads(line) for line in stderr().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "medverse.jobs"
    assert first["message"] == "job abc retried"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", first["time"])
    assert (second["method"], second["path"], second["status"]) == ("GET", "/healthz", 200)


def test_configuring_twice_keeps_one_handler_and_the_last_format(stderr: Callable[[], str]) -> None:
    configure_logging("INFO", LogFormat.JSON)
    configure_logging("DEBUG", LogFormat.TEXT)
    get_logger("x").debug("once")

    handlers = [h for h in logging.getLogger("medverse").handlers if isinstance(h, StderrHandler)]
    assert len(handlers) == 1
    assert TEXT_LINE.match(stderr().strip())
