"""The shipped demonstration CT model in the service: the README's CT segmented into its organs."""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from medverse.service.db import open_database
from tests.conftest import EXAMPLES, REPO
from tests.service.conftest import Api, make_settings, open_api

SHIPPED = REPO / "models" / "ct_demo_4organ_unet.pt"
ORGANS = {1: "liver", 2: "spleen", 3: "kidney", 4: "aorta"}
README_CT = EXAMPLES / "ct_abdomen" / "dicom"  # the CT `make demo` and the README show


@pytest.fixture
def ct_api(tmp_path: Path) -> Iterator[Api]:
    """The service (SQLite, in-process worker) with the shipped CT model as its models folder."""
    settings = make_settings(tmp_path, None)
    settings.models_dir.mkdir()
    shutil.copy(SHIPPED, settings.models_dir / SHIPPED.name)
    db = open_database(settings)
    try:
        yield from open_api(settings, db, run_worker=True)
    finally:
        db.dispose()


def _wait(api: Api, job_id: str, timeout: float = 600.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.client.get(f"/api/jobs/{job_id}", headers=api.clinician).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_the_service_segments_the_readme_ct_with_the_shipped_ct_model(ct_api: Api) -> None:
    api = ct_api
    models = api.client.get("/api/models", headers=api.clinician).json()
    assert [(m["name"], m["modality"], m["preset"]) for m in models] == [
        ("ct_demo_4organ_unet", "CT", "unet_brief")
    ]
    assert {int(k): v for k, v in models[0]["labels"].items()} == ORGANS
    files = [
        ("files", (p.name, p.read_bytes(), "application/dicom"))
        for p in sorted(README_CT.iterdir())
    ]
    study = api.client.post("/api/studies", files=files, headers=api.clinician)
    assert study.status_code == 201, study.text

    queued = api.client.post(
        "/api/jobs",
        json={"study_id": study.json()["id"], "model": "ct_demo_4organ_unet"},
        headers=api.clinician,
    )
    assert queued.status_code == 202, queued.text
    done = _wait(api, queued.json()["id"])

    assert done["state"] == "succeeded", done["error"]
    result = f"/api/jobs/{done['id']}/results"
    report = json.loads(api.client.get(f"{result}/report.json", headers=api.clinician).content)
    found = {s["name"] for s in report["structures"]}
    assert found and found <= set(ORGANS.values()), found
    seg = pydicom.dcmread(
        io.BytesIO(api.client.get(f"{result}/seg.dcm", headers=api.clinician).content)
    )
    segments = {item.SegmentLabel for item in seg.SegmentSequence} - {"Background"}  # LABELMAP
    assert segments == found
