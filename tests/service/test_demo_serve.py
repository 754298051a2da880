"""``medverse demo --serve``: the samples stored once, an admin token, jobs queued, the API up."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from medverse.core.settings import Settings
from medverse.service.auth.security import authenticate
from medverse.service.db import open_database
from medverse.service.demo import prepare_demo
from tests.conftest import EXAMPLES
from tests.service.conftest import MODEL
from tests.service.postgres import _free_port


def _models(tmp_path: Path, checkpoint: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(checkpoint, folder / checkpoint.name)
    return folder


def test_prepare_demo_stores_the_samples_once_and_queues_each_job_once(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", models_dir=_models(tmp_path, tiny_checkpoint))

    first = prepare_demo(settings, EXAMPLES)
    second = prepare_demo(settings, EXAMPLES)

    assert sorted(first.studies.values()) == [
        "CT abdomen",
        "MR hippocampus_001",
        "MR hippocampus_011",
        "MR hippocampus_034",
        "MR hippocampus_046",
    ]
    assert second.studies == first.studies
    assert (len(first.jobs), second.jobs) == (1, [])  # the CT model on the CT, never twice
    db = open_database(settings)
    pepper = settings.token_pepper.get_secret_value()
    with db.reading() as session:
        assert authenticate(session, first.token, pepper) is None  # revoked by the second run
        principal = authenticate(session, second.token, pepper)
    db.dispose()
    assert principal is not None and principal.role.value == "admin"


@pytest.mark.slow  # a real `medverse demo --serve` process: 15-60 s on a busy 2-core machine
def test_demo_serve_prints_the_url_and_a_working_admin_token(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDVERSE_")}
    env.update(MEDVERSE_DEVICE="cpu", MEDVERSE_POLL_SECONDS="0.2")
    models = _models(tmp_path, tiny_checkpoint)
    command = [sys.executable, "-m", "medverse.cli", "demo", "--serve", "--out", str(tmp_path),
               "--port", str(port), "--models-dir", str(models)]  # fmt: skip
    log = (tmp_path / "demo.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        printed = ""
        deadline = time.monotonic() + 120
        while "Uvicorn running" not in printed and "Application startup complete" not in printed:
            assert process.poll() is None and time.monotonic() < deadline, printed
            time.sleep(0.2)
            printed = (tmp_path / "demo.log").read_text(errors="replace")
        assert f"http://127.0.0.1:{port}" in printed
        token = re.search(r"admin token: (\S+)", printed)
        assert token is not None, printed
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token.group(1)}"},
        ) as api:
            studies = api.get("/api/studies").json()
            jobs = api.get("/api/jobs").json()
            anonymous = api.get("/api/studies", headers={"Authorization": ""})
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
    assert len(studies) == 6  # the CT, its de-identified copy, 4 hippocampus images
    assert [(j["model"], j["created_by"]) for j in jobs] == [(MODEL, "demo-admin")]
    assert anonymous.status_code == 401
