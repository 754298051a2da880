"""Uploading and reading studies over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pydicom
from sqlalchemy import func, select

from medverse.service.tables import AuditEvent, Instance, Study
from tests.conftest import HIPPOCAMPUS
from tests.service.conftest import Api, ct_files, ct_zip


def _audit(api: Api, **filters: str) -> list[dict[str, str]]:
    events = api.client.get("/api/audit", params=filters, headers=api.admin)
    assert events.status_code == 200
    return list(events.json())


def test_upload_ct_series_stores_the_study_its_series_and_a_deidentified_copy(api: Api) -> None:
    answer = api.client.post("/api/studies", files=ct_files(), headers=api.clinician)

    assert answer.status_code == 201, answer.text
    study = answer.json()
    assert study["identified"] is True
    assert study["instances_added"] == 20
    assert [(s["modality"], s["instances"], s["rows"]) for s in study["series"]] == [
        ("CT", 20, 512)
    ]
    copy = api.client.get(f"/api/studies/{study['deidentified_study_id']}", headers=api.clinician)
    assert copy.status_code == 200
    assert copy.json()["identified"] is False
    assert copy.json()["source_study_id"] == study["id"]
    assert copy.json()["series"][0]["instances"] == 20
    stored = sorted((api.settings.data_dir / "studies" / copy.json()["id"]).rglob("*.dcm"))
    header = pydicom.dcmread(stored[0], stop_before_pixels=True)
    assert header.PatientIdentityRemoved == "YES"
    assert stored[0].name == f"{header.SOPInstanceUID}.dcm"  # named by UID, not client names


def test_uploading_the_same_instances_again_is_idempotent(api: Api) -> None:
    first = api.client.post("/api/studies", files=ct_files(), headers=api.clinician).json()
    again = api.client.post(
        "/api/studies", files=[("files", ("ct.zip", ct_zip(), "application/zip"))],
        headers=api.clinician,
    )  # fmt: skip

    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]
    assert (again.json()["instances_added"], again.json()["instances_already_present"]) == (0, 20)
    assert again.json()["deidentified_study_id"] == first["deidentified_study_id"]
    with api.db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 2
        assert session.scalar(select(func.count()).select_from(Instance)) == 40
    assert len(list((api.settings.data_dir / "studies").rglob("*.dcm"))) == 40


def test_no_token_and_bad_tokens_get_401(api: Api) -> None:
    assert api.client.get("/api/studies").status_code == 401
    bad = {"Authorization": "Bearer mvt_0000000000000000_forged"}
    answer = api.client.get("/api/studies", headers=bad)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    token = api.clinician["Authorization"]
    tampered = {"Authorization": token[:-2] + ("AA" if not token.endswith("AA") else "BB")}
    assert api.client.get("/api/studies", headers=tampered).status_code == 401
    assert api.client.post("/api/studies", files=ct_files()).status_code == 401


def test_researcher_gets_404_on_the_identified_study_and_the_attempt_is_audited(api: Api) -> None:
    study = api.client.post("/api/studies", files=ct_files(), headers=api.clinician).json()

    refused = api.client.get(f"/api/studies/{study['id']}", headers=api.researcher)
    listing = api.client.get("/api/studies", headers=api.researcher).json()
    copy = api.client.get(f"/api/studies/{study['deidentified_study_id']}", headers=api.researcher)

    missing = api.client.get(f"/api/studies/{uuid.uuid4()}", headers=api.researcher)
    assert refused.status_code == missing.status_code == 404  # the same answer as a missing one
    assert refused.json()["detail"] == f"no study {study['id']}"
    assert [s["id"] for s in listing] == [study["deidentified_study_id"]]
    assert copy.status_code == 200
    assert copy.json()["source_study_id"] is None  # the link to the identified study is hidden
    denied = [e for e in _audit(api, actor="researcher-1") if e["outcome"] == "denied"]
    assert [(e["action"], e["resource"]) for e in denied] == [
        ("study.read", f"study/{study['id']}")
    ]
    assert denied[0]["role"] == "researcher" and denied[0]["client"]


def test_every_study_read_and_write_is_audited(api: Api) -> None:
    study = api.client.post("/api/studies", files=ct_files(), headers=api.clinician).json()
    api.client.get(f"/api/studies/{study['id']}", headers=api.clinician)
    api.client.get("/api/studies/no-such-study", headers=api.clinician)

    events = _audit(api, actor="clinician-1")
    seen = {(e["action"], e["resource"], e["outcome"]) for e in events}
    assert ("study.upload", f"study/{study['id']}", "ok") in seen
    assert ("study.read", f"study/{study['id']}", "ok") in seen
    assert ("study.read", "study/no-such-study", "not_found") in seen
    with api.db.reading() as session:
        reads = session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.read"))
        assert [e.actor for e in reads] == ["admin-1"]


def test_only_admins_delete_and_deletion_removes_rows_and_files(api: Api) -> None:
    study = api.client.post("/api/studies", files=ct_files(), headers=api.clinician).json()

    assert (
        api.client.delete(f"/api/studies/{study['id']}", headers=api.clinician).status_code == 403
    )
    answer = api.client.delete(f"/api/studies/{study['id']}", headers=api.admin)

    assert answer.status_code == 200
    assert set(answer.json()["deleted_study_ids"]) == {study["id"], study["deidentified_study_id"]}
    assert api.client.get(f"/api/studies/{study['id']}", headers=api.admin).status_code == 404
    assert not list((api.settings.data_dir / "studies").rglob("*.dcm"))


def test_nifti_upload_is_one_series_and_idempotent(api: Api) -> None:
    image = (HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz").read_bytes()
    files = [("files", ("case.nii.gz", image, "application/gzip"))]

    first = api.client.post("/api/studies", files=files, headers=api.clinician)
    again = api.client.post("/api/studies", files=files, headers=api.clinician)

    assert first.status_code == 201, first.text
    assert first.json()["kind"] == "nifti"
    assert first.json()["series"][0]["modality"] == "NIFTI"
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
