"""Jobs over HTTP: queue, run with the in-process worker, download results, cancel, refuse."""

from __future__ import annotations

import gzip
import io
import json
import time

import nibabel as nib
import pydicom

from medverse.service.jobs.worker import Worker
from tests.conftest import MR_STUDY
from tests.service.conftest import MODEL, Api, ct_files

FIVE = ["labels.nii.gz", "seg.dcm", "meshes.glb", "report.json", "overview.png"]


def _wait(api: Api, job_id: str, timeout: float = 120.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.client.get(f"/api/jobs/{job_id}", headers=api.clinician).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def _upload_ct(api: Api) -> dict[str, str]:
    answer = api.client.post("/api/studies", files=ct_files(), headers=api.clinician)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_job_runs_to_succeeded_and_all_five_results_download(api_with_worker: Api) -> None:
    api = api_with_worker
    models = api.client.get("/api/models", headers=api.researcher).json()
    assert [(m["name"], m["modality"], m["preset"]) for m in models] == [
        (MODEL, "CT", "unet_small")
    ]
    study = _upload_ct(api)

    queued = api.client.post(
        "/api/jobs", json={"study_id": study["id"], "model": MODEL}, headers=api.clinician
    )
    assert queued.status_code == 202, queued.text
    done = _wait(api, queued.json()["id"])

    assert done["state"] == "succeeded", done["error"]
    assert (done["progress"], done["attempts"], done["results"]) == (1.0, 1, FIVE)
    files = {}
    for name in FIVE:
        answer = api.client.get(f"/api/jobs/{done['id']}/results/{name}", headers=api.clinician)
        assert answer.status_code == 200, (name, answer.text)
        files[name] = answer.content
    labels = nib.Nifti1Image.from_bytes(gzip.decompress(files["labels.nii.gz"]))
    assert labels.shape == (512, 512, 20)
    seg = pydicom.dcmread(io.BytesIO(files["seg.dcm"]))
    assert seg.Modality == "SEG"
    report = json.loads(files["report.json"])
    assert {s["name"] for s in report["structures"]} <= {"spleen", "liver"}
    assert report["structures"], "the tiny model found nothing"
    assert files["meshes.glb"][:4] == b"glTF"
    assert files["overview.png"][:8] == b"\x89PNG\r\n\x1a\n"
    reads = api.client.get(
        "/api/audit", params={"resource": f"job/{done['id']}/results/"}, headers=api.admin
    ).json()
    assert sorted(e["resource"].rsplit("/", 1)[1] for e in reads) == sorted(FIVE)
    metrics = api.client.get("/metrics", headers=api.admin).text
    assert 'medverse_jobs{state="succeeded"} 1' in metrics
    assert "medverse_job_duration_seconds_count 1" in metrics


def test_job_requests_are_checked(api: Api) -> None:
    study = _upload_ct(api)

    unknown = api.client.post(
        "/api/jobs", json={"study_id": study["id"], "model": "nope"}, headers=api.clinician
    )
    traversal = api.client.post(
        "/api/jobs", json={"study_id": study["id"], "model": "../x"}, headers=api.clinician
    )
    researcher = api.client.post(
        "/api/jobs", json={"study_id": study["id"], "model": "nope"}, headers=api.researcher
    )
    missing = api.client.post(
        "/api/jobs", json={"study_id": "no-such", "model": "nope"}, headers=api.clinician
    )

    assert (unknown.status_code, unknown.json()["detail"]) == (
        400,
        "unknown model 'nope'; available: none",
    )
    assert traversal.status_code == 422
    assert researcher.status_code == 404  # the identified study is hidden from researchers
    assert missing.status_code == 404


def test_a_series_of_another_modality_is_refused_before_it_is_queued(
    api: Api, tiny_model: None
) -> None:
    series = sorted((MR_STUDY / "11-T1post-18670").iterdir())
    files = [("files", (f.name, f.read_bytes(), "application/dicom")) for f in series]
    study = api.client.post("/api/studies", files=files, headers=api.clinician).json()

    refused = api.client.post(
        "/api/jobs", json={"study_id": study["id"], "model": MODEL}, headers=api.clinician
    )

    assert (refused.status_code, refused.json()["detail"]) == (
        400,
        f"model {MODEL!r}: the image is MR but the model was trained on CT images",
    )
    assert api.client.get("/api/jobs", headers=api.admin).json() == []


def test_queued_job_can_be_cancelled_once_by_its_owner_or_an_admin(
    api: Api, tiny_model: None
) -> None:
    study = _upload_ct(api)
    job = api.client.post(
        "/api/jobs", json={"study_id": study["id"], "model": MODEL}, headers=api.clinician
    ).json()
    assert job["state"] == "queued"

    other = api.client.post(f"/api/jobs/{job['id']}/cancel", headers=api.researcher)
    first = api.client.post(f"/api/jobs/{job['id']}/cancel", headers=api.clinician)
    second = api.client.post(f"/api/jobs/{job['id']}/cancel", headers=api.admin)

    assert other.status_code == 404  # a researcher may not even see it (identified study)
    assert (first.status_code, first.json()["state"]) == (200, "cancelled")
    assert second.status_code == 409
    listing = api.client.get("/api/jobs", params={"state": "cancelled"}, headers=api.admin)
    assert [j["id"] for j in listing.json()] == [job["id"]]
    results = api.client.get(f"/api/jobs/{job['id']}/results/report.json", headers=api.clinician)
    assert results.status_code == 409


def test_a_job_that_cannot_run_fails_at_once_with_the_reason(api: Api, tiny_model: None) -> None:
    study = _upload_ct(api)
    job = api.client.post(
        "/api/jobs", json={"study_id": study["id"], "model": MODEL}, headers=api.clinician
    ).json()
    (api.settings.models_dir / f"{MODEL}.pt").unlink()  # the model went away meanwhile
    services = api.client.app.state.services  # type: ignore[attr-defined]
    worker = Worker(api.settings, services.db, services.storage, services.catalog)

    assert worker.run_once() is True
    failed = api.client.get(f"/api/jobs/{job['id']}", headers=api.clinician).json()

    assert (failed["state"], failed["attempts"]) == ("failed", 1)  # bad input: no retry
    assert failed["error"] == "unknown model 'ct_tiny'; available: none"
    assert not (api.settings.data_dir / "results" / job["id"]).exists()
    assert worker.run_once() is False
