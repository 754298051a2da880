"""Hostile and broken uploads are refused with a clear message and leave nothing behind."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from medverse.service.db import open_database
from medverse.service.tables import Instance, Study
from tests.conftest import CT_SERIES, MR_STUDY
from tests.service.conftest import Api, ct_files, make_settings, open_api, zip_of

ONE_SLICE = sorted(CT_SERIES.iterdir())[0]


def _nothing_stored(api: Api) -> None:
    with api.db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 0
        assert session.scalar(select(func.count()).select_from(Instance)) == 0
    data = api.settings.data_dir
    assert not any((data / "studies").iterdir())
    assert not any((data / "staging").iterdir())


def _upload_zip(api: Api, archive: bytes, name: str = "study.zip") -> tuple[int, str]:
    answer = api.client.post(
        "/api/studies", files=[("files", (name, archive, "application/zip"))],
        headers=api.clinician,
    )  # fmt: skip
    return answer.status_code, answer.json()["detail"]


@pytest.mark.parametrize("entry", ["../../etc/evil.dcm", "dicom/../../escape.dcm"])
def test_zip_with_parent_paths_is_refused(api: Api, entry: str) -> None:
    archive = zip_of({"ok/slice.dcm": ONE_SLICE.read_bytes(), entry: ONE_SLICE.read_bytes()})

    status, detail = _upload_zip(api, archive)

    assert status == 400
    assert detail == f"study.zip: entry {entry!r} points outside the archive (../); refused"
    _nothing_stored(api)
    assert not (api.settings.data_dir.parent / "escape.dcm").exists()


def test_zip_with_an_absolute_path_or_a_symlink_is_refused(api: Api) -> None:
    status, detail = _upload_zip(api, zip_of({"/etc/passwd": b"x"}))
    assert (status, detail) == (400, "study.zip: entry '/etc/passwd' has an absolute path; refused")

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/shadow")
    status, detail = _upload_zip(api, buffer.getvalue())
    assert (status, detail) == (400, "study.zip: entry 'link.dcm' is a symbolic link; refused")
    _nothing_stored(api)


def test_zip_bomb_is_refused_by_its_compression_ratio(api: Api) -> None:
    status, detail = _upload_zip(api, zip_of({"bomb.dcm": bytes(50_000_000)}))

    assert status == 400
    assert "expands" in detail and "possible zip bomb" in detail
    _nothing_stored(api)


def test_zip_over_the_unpacked_size_limit_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, max_archive_bytes=1_000_000)
    db = open_database(settings)
    archive = zip_of({f"{i}.dcm": ONE_SLICE.read_bytes() for i in range(8)})
    try:
        for api in open_api(settings, db, run_worker=False):
            status, detail = _upload_zip(api, archive)
            assert status == 400
            assert "unpacks to more than 976.6 KiB (MEDVERSE_MAX_ARCHIVE_BYTES)" in detail
            _nothing_stored(api)
    finally:
        db.dispose()


def test_oversized_upload_gets_413_with_a_clear_message(api: Api) -> None:
    big = [("files", (f"{i}.dcm", bytes(1_000_000), "application/dicom")) for i in range(11)]

    answer = api.client.post("/api/studies", files=big, headers=api.clinician)

    assert answer.status_code == 413
    assert answer.json()["detail"].startswith(
        "upload too large: the limit is 9.5 MiB (10000000 bytes"
    )
    _nothing_stored(api)


def test_garbage_file_is_refused_naming_it_and_nothing_of_the_upload_is_stored(api: Api) -> None:
    files = [*ct_files(), ("files", ("notes.txt", b"not an image at all" * 40, "text/plain"))]

    answer = api.client.post("/api/studies", files=files, headers=api.clinician)

    assert answer.status_code == 400
    assert answer.json()["detail"] == "notes.txt: not a DICOM or NIfTI file"
    _nothing_stored(api)


@pytest.mark.parametrize(
    ("source", "keep"),
    [
        (ONE_SLICE, 1200),  # ends inside the header
        (ONE_SLICE, 80_000),  # ends inside JPEG 2000 fragments (undefined length)
        (next(iter(sorted((MR_STUDY / "11-T1post-18670").iterdir()))), -1000),  # native pixels
    ],
)
def test_truncated_dicom_is_refused_naming_it(api: Api, source: Path, keep: int) -> None:
    data = source.read_bytes()[:keep]
    answer = api.client.post(
        "/api/studies", files=[("files", ("cut.dcm", data, "application/dicom"))],
        headers=api.clinician,
    )  # fmt: skip

    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("cut.dcm: truncated DICOM file")
    _nothing_stored(api)


def test_researchers_cannot_upload(api: Api) -> None:
    answer = api.client.post("/api/studies", files=ct_files(), headers=api.researcher)

    assert answer.status_code == 403
    _nothing_stored(api)


def test_oversized_streamed_upload_without_a_length_gets_413(api: Api) -> None:
    boundary = "medverse-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.dcm"\r\n'
        "Content-Type: application/dicom\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:  # chunked: the server only learns the size by counting
        yield head
        for _ in range(12):
            yield bytes(1_000_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = api.client.post(
        "/api/studies",
        content=body(),
        headers={**api.clinician, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert answer.status_code == 413
    assert "MEDVERSE_MAX_UPLOAD_BYTES" in answer.json()["detail"]
    _nothing_stored(api)
