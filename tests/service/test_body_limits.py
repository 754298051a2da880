"""Request bodies: a streamed body is refused at the limit, and no error echoes the input (#12)."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import Api
from tests.service.postgres import _free_port

SERVE = """
import sys, uvicorn
from medverse.core.settings import Settings
from medverse.service.app import create_app
settings = Settings(data_dir=sys.argv[1], models_dir=sys.argv[1], device="cpu")
uvicorn.run(create_app(settings), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""
CHUNK = 64 * 1024
TOTAL = 50 * 1024 * 1024


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A real uvicorn on 127.0.0.1 (SQLite in tmp_path), stopped by its PID."""
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path), str(port)])
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(timeout=20)


def _chunked_post(port: int, path: str) -> tuple[int, bytes, int]:
    """Send up to 50 MB chunked; stop when the server answers. Returns status, body, bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = f"{CHUNK:x}\r\n".encode() + b"[" + b"1," * (CHUNK // 2 - 1) + b"1\r\n"
        try:
            while sent < TOTAL and not select.select([conn], [], [], 0)[0]:
                conn.sendall(chunk)
                sent += CHUNK
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply) < reply.index(b"\r\n\r\n") + 4 + 10:
            part = conn.recv(65536)
            if not part:
                break
            reply += part
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body, sent


def test_a_chunked_50_mb_body_without_a_token_is_refused_at_the_limit(
    server: tuple[int, int],
) -> None:
    pid, port = server
    _chunked_post(port, "/api/jobs")  # warm-up: the first request loads what every one needs
    before = _rss_kib(pid)

    status, body, sent = _chunked_post(port, "/api/jobs")

    grown = _rss_kib(pid) - before
    assert status == 413, body[:200]
    assert b"request body too large" in body
    assert sent < TOTAL
    assert grown < 5 * 1024, f"server RSS grew by {grown} KiB"


def test_a_refused_body_is_one_line_naming_the_field_without_echoing_the_input(
    api: Api,
) -> None:
    secret = "Albus Dumbledore " * 50_000  # 850 kB, under the JSON limit
    answer = api.client.post(
        "/api/jobs", json={"study_id": secret, "model": "x"}, headers=api.clinician
    )

    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    assert detail.startswith("body.study_id: ")
    assert len(answer.content) < 1024
    assert b"Dumbledore" not in answer.content
    not_json = api.client.post(
        "/api/jobs", content=b"{" + secret.encode(), headers={**api.clinician,
        "content-type": "application/json"}
    )  # fmt: skip
    assert not_json.status_code == 422 and len(not_json.content) < 1024
    assert json.loads(not_json.content)["detail"].startswith("body")
