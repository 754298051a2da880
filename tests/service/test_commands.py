"""``medverse serve`` and ``medverse worker`` as real processes sharing one database."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from medverse.cli.main import main
from tests.service.conftest import MODEL, ct_files


def test_serve_and_worker_commands_are_registered(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("serve", "worker", "users"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--no-worker" in text and "--data-dir" in text and "token" in text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "medverse", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            raise
    return int(process.returncode)


@pytest.mark.slow
def test_serve_without_worker_and_a_worker_process_run_a_job(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, models = tmp_path / "data", tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_checkpoint, models / f"{MODEL}.pt")
    assert main(["users", "add", "ann", "--role", "clinician", "--data-dir", str(data)]) == 0
    assert main(["users", "token", "ann", "--data-dir", str(data)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    env = {**os.environ, "MEDVERSE_DEVICE": "cpu", "MEDVERSE_POLL_SECONDS": "0.2"}
    port = _free_port()
    folders = ["--data-dir", str(data), "--models-dir", str(models)]
    server = _start(["serve", "--port", str(port), "--no-worker", *folders], env, tmp_path / "s")
    worker = _start(["worker", *folders], env, tmp_path / "w")
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, server)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            study = client.post("/api/studies", files=ct_files()).json()
            job = client.post("/api/jobs", json={"study_id": study["id"], "model": MODEL}).json()
            deadline = time.monotonic() + 120
            while (state := client.get(f"/api/jobs/{job['id']}").json())["state"] in (
                "queued",
                "running",
            ):
                assert time.monotonic() < deadline, "the worker process did not finish the job"
                time.sleep(0.5)
            assert state["state"] == "succeeded", state["error"]
            report = client.get(f"/api/jobs/{job['id']}/results/report.json")
            assert report.status_code == 200 and report.json()["structures"]
    finally:
        codes = (_stop(worker), _stop(server))
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it (exit status -15)
    assert codes in ((0, 0), (0, -signal.SIGTERM)), (tmp_path / "s").read_text()


def _wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "medverse serve exited"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("medverse serve did not become healthy in 60 s")
