"""The PACS link against a real Orthanc (DICOMweb plugin): import, segment, push back, find it.

Orthanc holds two series of the real brain-MR study (real UIDs): the 40-slice hippocampus crop
and the 22-slice T1 post-contrast series. A small MR UNet is fitted to one real hippocampus
case in the session, so the crop's segmentation finds structures and a DICOM SEG is written.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pydicom
import pytest

from medverse.service.db import open_database
from medverse.service.pacs.dicomweb import DicomWebClient
from tests.conftest import MR_STUDY
from tests.service import orthanc
from tests.service.conftest import Api, make_settings, open_api

MR_MODEL = "mr_tiny"
CROP = MR_STUDY / "11_HCropVolume"
T1POST = MR_STUDY / "11-T1post-18670"
PHI = ("albus", "dumbledore", "pgbm")


def _uids(folder: Path) -> tuple[str, str, set[str]]:
    """Study UID, series UID and SOP Instance UIDs of a series folder."""
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    return (
        str(headers[0].StudyInstanceUID),
        str(headers[0].SeriesInstanceUID),
        {str(h.SOPInstanceUID) for h in headers},
    )


STUDY_UID, CROP_UID, CROP_SOPS = _uids(CROP)
T1POST_UID = _uids(T1POST)[1]


@pytest.fixture(scope="session")
def orthanc_server() -> Iterator[orthanc.OrthancServer]:
    """One Orthanc for the session (skipped only if it is not installed: `make system-deps`)."""
    if not orthanc.available():
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (make system-deps)")
    server = orthanc.start_server()
    yield server
    server.stop()


@pytest.fixture
def pacs(orthanc_server: orthanc.OrthancServer) -> orthanc.OrthancServer:
    """Orthanc holding the MR crop and T1post series (and nothing else)."""
    orthanc_server.clear()
    files = [*sorted(CROP.iterdir()), *sorted(T1POST.iterdir())]
    assert orthanc_server.upload(files) == 62
    return orthanc_server


@pytest.fixture(scope="session")
def mr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """unet_small fitted for 15 steps to hippocampus_001 at 1.5 mm (finds both structures)."""
    from tests.inference.helpers import fit_checkpoint, hippo_plan, read_hippo

    image, labels = read_hippo()
    plan = hippo_plan((1.5, 1.5, 1.5)).model_copy(update={"patch_size": (32, 48, 32)})
    path = tmp_path_factory.mktemp("mr-model") / f"{MR_MODEL}.pt"
    return fit_checkpoint(image, labels, plan, path, steps=15, lr=1e-2)


@contextmanager
def _api(tmp_path: Path, checkpoint: Path | None, **settings: object) -> Iterator[Api]:
    (tmp_path / "models").mkdir()
    if checkpoint is not None:
        shutil.copy(checkpoint, tmp_path / "models" / checkpoint.name)
    config = make_settings(tmp_path, None, **settings)
    db = open_database(config)
    try:
        yield from open_api(config, db, run_worker=checkpoint is not None)
    finally:
        db.dispose()


@pytest.fixture
def pacs_api(tmp_path: Path, pacs: orthanc.OrthancServer, mr_checkpoint: Path) -> Iterator[Api]:
    """The app (with its worker and the MR model) linked to Orthanc."""
    with _api(tmp_path, mr_checkpoint, pacs_url=pacs.dicomweb) as api:
        yield api


def _import(api: Api, study_uid: str = STUDY_UID) -> httpx.Response:
    return api.client.post(
        "/api/pacs/import", json={"study_instance_uid": study_uid}, headers=api.clinician
    )


def _segment(api: Api, study_id: str) -> dict[str, object]:
    queued = api.client.post(
        "/api/jobs",
        json={"study_id": study_id, "series_uid": CROP_UID, "model": MR_MODEL},
        headers=api.clinician,
    )
    assert queued.status_code == 202, queued.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = api.client.get(f"/api/jobs/{queued.json()['id']}", headers=api.clinician).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            assert job["state"] == "succeeded", job["error"]
            return dict(job)
        time.sleep(0.2)
    raise AssertionError("the job did not finish in 120 s")


def test_round_trip_import_segment_push_and_find_the_seg_in_orthanc(
    pacs_api: Api, pacs: orthanc.OrthancServer
) -> None:
    api = pacs_api
    first = _import(api)
    again = _import(api)

    assert first.status_code == 201, first.text
    study = first.json()
    assert (study["study_uid"], study["identified"]) == (STUDY_UID, True)
    assert {(s["series_uid"], s["instances"]) for s in study["series"]} == {
        (CROP_UID, 40),
        (T1POST_UID, 22),
    }
    assert (study["instances_added"], study["instances_already_present"]) == (62, 0)
    assert study["deidentified_study_id"]
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["instances_added"]) == (study["id"], 0)

    job = _segment(api, study["id"])
    assert "seg.dcm" in job["results"]  # type: ignore[operator]
    pushed = api.client.post(f"/api/jobs/{job['id']}/push", headers=api.clinician)
    assert pushed.status_code == 200, pushed.text
    push = pushed.json()
    assert (push["study_uid"], push["referenced_series_uid"]) == (STUDY_UID, CROP_UID)

    with httpx.Client(base_url=pacs.dicomweb, timeout=30) as qido:
        segs = qido.get(f"/studies/{STUDY_UID}/series", params={"Modality": "SEG"}).json()
        assert [s["0020000E"]["Value"][0] for s in segs] == [push["series_uid"]]
        meta = qido.get(f"/studies/{STUDY_UID}/series/{push['series_uid']}/metadata").json()
    assert len(meta) == 1 and meta[0]["00080018"]["Value"] == [push["sop_instance_uid"]]
    references = meta[0]["00081115"]["Value"]  # ReferencedSeriesSequence
    assert [r["0020000E"]["Value"][0] for r in references] == [CROP_UID]
    referenced = {i["00081155"]["Value"][0] for i in references[0]["0008114A"]["Value"]}
    assert referenced and referenced <= CROP_SOPS
    audit = api.client.get("/api/audit", headers=api.admin).json()
    actions = {(e["action"], e["outcome"]) for e in audit}
    assert {("pacs.import", "ok"), ("result.push", "ok")} <= actions


def test_import_refusals_name_the_problem(pacs_api: Api) -> None:
    api = pacs_api
    missing = _import(api, "1.2.3.4.5")
    researcher = api.client.post(
        "/api/pacs/import", json={"study_instance_uid": STUDY_UID}, headers=api.researcher
    )
    bad_uid = _import(api, "1.2.x")
    queued = api.client.post(
        "/api/jobs", json={"study_id": "no-such", "model": MR_MODEL}, headers=api.clinician
    )
    push_missing = api.client.post("/api/jobs/no-such/push", headers=api.clinician)

    assert (missing.status_code, missing.json()["detail"]) == (
        404,
        "the PACS has no study 1.2.3.4.5",
    )
    assert researcher.status_code == 403
    assert bad_uid.status_code == 422
    assert queued.status_code == 404
    assert push_missing.status_code == 404
    denied = api.client.get("/api/audit", params={"resource": "pacs/"}, headers=api.admin).json()
    assert {(e["actor"], e["outcome"]) for e in denied} >= {("researcher-1", "denied")}


class _Garbage(BaseHTTPRequestHandler):
    """A PACS that answers QIDO with HTML (or WADO with a multipart of non-DICOM parts)."""

    def do_GET(self) -> None:
        if "/instances" in self.path:  # QIDO-RS instances: none listed
            body, kind = b"[]", "application/dicom+json"
        elif "/series/" in self.path:  # WADO-RS retrieve: a part that is not DICOM
            body = b"--b\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--b--\r\n"
            kind = 'multipart/related; type="application/dicom"; boundary=b'
        elif self.path.startswith("/wado/"):  # QIDO-RS series: one
            body = b'[{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}]'
            kind = "application/dicom+json"
        else:
            body, kind = b"<html>maintenance</html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """STOW-RS: read the body, refuse every instance (out of resources, 0xA700)."""
        self.rfile.read(int(self.headers["Content-Length"]))
        failed = {"00081155": {"vr": "UI", "Value": ["1.2.3.9"]},
                  "00081197": {"vr": "US", "Value": [0xA700]}}  # fmt: skip
        body = json.dumps({"00081198": {"vr": "SQ", "Value": [failed]}}).encode()
        self.send_response(409)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def garbage_pacs() -> Iterator[str]:
    """A loopback HTTP server that answers like a broken PACS; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_unreachable_slow_or_garbled_pacs_gives_502_or_504(
    tmp_path: Path, garbage_pacs: str
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/dicom-web"
    silent = socket.socket()  # accepts connections (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    cases = {
        "none": (None, 503, "no PACS is configured"),
        "dead": (dead, 502, "is unreachable"),
        "silent": (f"http://127.0.0.1:{silent.getsockname()[1]}", 504, "did not answer"),
        "html": (garbage_pacs + "/html", 502, "with invalid JSON"),
        "wado": (garbage_pacs + "/wado", 502, "not readable DICOM"),
    }
    try:
        for name, (url, status, text) in cases.items():
            folder = tmp_path / name
            folder.mkdir()
            with _api(folder, None, pacs_url=url, pacs_timeout_seconds=0.5) as api:
                answer = api.client.post(
                    "/api/pacs/import", json={"study_instance_uid": "1.2.3"}, headers=api.admin
                )
                assert answer.status_code == status, (name, answer.text)
                assert text in answer.json()["detail"], (name, answer.text)
                assert api.client.get("/api/studies", headers=api.admin).json() == []
                assert not any((folder / "data" / "staging").iterdir())
    finally:
        silent.close()


def test_no_patient_name_or_id_in_the_application_log(
    pacs_api: Api, capfd: pytest.CaptureFixture[str]
) -> None:
    """Upload, import, segment and push the MR study with every log record captured."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")

    keep = Keep(logging.DEBUG)
    watched = [logging.getLogger(), logging.getLogger("medverse")]
    levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(keep)
        logger.setLevel(logging.DEBUG)
    try:
        api = pacs_api
        files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in CROP.iterdir()]
        uploaded = api.client.post("/api/studies", files=files, headers=api.clinician)
        assert uploaded.status_code == 201, uploaded.text
        imported = _import(api)
        assert (imported.status_code, imported.json()["instances_added"]) == (201, 22)
        job = _segment(api, uploaded.json()["id"])
        assert api.client.post(f"/api/jobs/{job['id']}/push", headers=api.admin).status_code == 200
        assert _import(api, "1.2.3.4.5").status_code == 404
        audit = api.client.get("/api/audit", headers=api.admin).text
    finally:
        for logger, level in zip(watched, levels):
            logger.removeHandler(keep)
            logger.setLevel(level)
    printed = capfd.readouterr()
    assert len(records) > 5, "nothing was logged: the capture is not working"
    text = "\n".join([*records, printed.out, printed.err, audit]).lower()
    assert [word for word in PHI if word in text] == []


def test_stow_refusal_is_reported_per_instance(tmp_path: Path, garbage_pacs: str) -> None:
    seg = tmp_path / "seg.dcm"
    seg.write_bytes(b"\0" * 128 + b"DICM")
    with DicomWebClient(garbage_pacs, timeout=5.0) as client:
        outcome = client.store([seg], "1.2.3")

    assert (outcome.stored, outcome.failed) == ([], {"1.2.3.9": str(0xA700)})
