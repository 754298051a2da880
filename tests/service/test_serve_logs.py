"""``medverse serve`` logs: every line one record, ISO 8601 UTC, uvicorn's lines included."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service.postgres import _free_port

TEXT_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .+$"
)


def _serve_and_log(tmp_path: Path, log_format: str) -> list[str]:
    """Run ``medverse serve``, request /healthz and a long path, stop it; its stderr lines."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDVERSE_")}
    env.update(
        MEDVERSE_DATA_DIR=str(tmp_path / "data"),
        MEDVERSE_MODELS_DIR=str(tmp_path / "no-models"),
        MEDVERSE_LOG_FORMAT=log_format,
        COLUMNS="80",  # what a non-TTY console assumes: records must not wrap at it
    )
    command = [sys.executable, "-m", "medverse.cli", "serve", "--port", str(port), "--no-worker"]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(process, port, log_path)
            httpx.get(f"http://127.0.0.1:{port}/api/studies/{'x' * 150}", timeout=10)
        finally:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    return log_path.read_text().splitlines()


def _wait_healthy(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)


def test_serve_writes_one_line_iso_utc_records(tmp_path: Path) -> None:
    lines = _serve_and_log(tmp_path, "text")

    assert lines, "serve logged nothing"
    assert [line for line in lines if not TEXT_LINE.match(line)] == []
    access = [line for line in lines if " INFO uvicorn.access: " in line]
    assert any('"GET /healthz HTTP/1.1" 200' in line for line in access), lines
    assert any(f"/api/studies/{'x' * 150} HTTP/1.1" in line for line in access), lines
    assert any(" uvicorn.error: Uvicorn running on http://127.0.0.1:" in line for line in lines)
    assert any(" WARNING medverse.service.app: no models found" in line for line in lines)


@pytest.mark.slow  # a second serve process (the JSON formatter has its unit test in tests/core)
def test_serve_writes_json_lines_when_asked(tmp_path: Path) -> None:
    records = [json.loads(line) for line in _serve_and_log(tmp_path, "json")]

    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert all(r["time"].endswith("Z") for r in records)
    requests = [(r["method"], r["path"], r["status"]) for r in records if "path" in r]
    assert ("GET", "/healthz", 200) in requests
    assert any(logger == "medverse.service.app" for logger in (r["logger"] for r in records))
