"""A DICOMweb client for the PACS link: QIDO-RS search, WADO-RS retrieve, STOW-RS store (httpx).

Every failure to talk to the PACS becomes a :class:`PacsError` (HTTP 502 for the caller) or a
:class:`PacsTimeoutError` (504) whose message says what was asked and what went wrong; nothing
the PACS sends (patient names live in its answers) is ever logged or quoted.
"""

from __future__ import annotations

import mmap
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from medverse.core.settings import Settings
from medverse.service.errors import ServiceError

DICOM_JSON = "application/dicom+json"
# Any transfer syntax: the archive stores what the PACS holds (no transcoding on its side).
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
QIDO_PAGE = 1000
MAX_QIDO_PAGES = 100
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_CHUNK = 1 << 20
SOP_INSTANCE_UID = "00080018"
SERIES_INSTANCE_UID = "0020000E"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"


class PacsError(ServiceError):
    """The PACS is unreachable, refused the request, or answered something unusable (502)."""

    status_code = 502


class PacsTimeoutError(PacsError):
    """The PACS did not answer in time (504)."""

    status_code = 504


@dataclass(frozen=True)
class StoreOutcome:
    """What the PACS said about a STOW-RS request.

    Attributes:
        stored: SOP Instance UIDs it stored.
        failed: SOP Instance UID -> failure reason code, for those it refused.
    """

    stored: list[str]
    failed: dict[str, str] = field(default_factory=dict)


def tag_values(dataset: dict[str, Any], tag: str) -> list[Any]:
    """The ``Value`` list of one attribute of a DICOM JSON dataset (empty when absent)."""
    element = dataset.get(tag)
    if not isinstance(element, dict):
        return []
    values = element.get("Value", [])
    return values if isinstance(values, list) else []


def tag_text(dataset: dict[str, Any], tag: str) -> str:
    """The first value of one attribute as text ("" when absent)."""
    values = tag_values(dataset, tag)
    return str(values[0]) if values and values[0] is not None else ""


class DicomWebClient:
    """Talks DICOMweb to one PACS; use it as a context manager.

    Args:
        base_url: The DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``.
        timeout: Seconds one request (connect, each read, each write) may take.
        auth: User and password for HTTP basic authentication, or None.
        transport: An httpx transport (tests), or None for the network.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        auth: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            timeout=timeout,
            auth=httpx.BasicAuth(*auth) if auth else None,
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.close()

    @property
    def where(self) -> str:
        """The PACS address for messages (without any credentials)."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def search_series(self, study_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS: the series of a study (an empty list if the PACS has no such study)."""
        return self._search(f"/studies/{study_uid}/series", "QIDO-RS series search")

    def search_instances(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS: the instances of one series."""
        path = f"/studies/{study_uid}/series/{series_uid}/instances"
        return self._search(path, "QIDO-RS instance search")

    def _search(self, path: str, what: str) -> list[dict[str, Any]]:
        """All pages of one QIDO-RS query (``limit``/``offset``, stopping at a short page)."""
        found: list[dict[str, Any]] = []
        for page in range(MAX_QIDO_PAGES):
            params = {"limit": str(QIDO_PAGE), "offset": str(page * QIDO_PAGE)}
            with self._talking(what):
                answer = self._http.get(
                    self.base_url + path, params=params, headers={"Accept": DICOM_JSON}
                )
            self._check_status(answer, what)
            batch = [] if answer.status_code == 204 or not answer.content else _json(answer, what)
            if not isinstance(batch, list) or not all(isinstance(d, dict) for d in batch):
                raise PacsError(f"the PACS answered the {what} with something other than a list")
            found.extend(batch)
            if len(batch) < QIDO_PAGE:
                return found
        raise PacsError(f"the PACS {what} did not end after {MAX_QIDO_PAGES} pages")

    def retrieve_series(
        self, study_uid: str, series_uid: str, folder: Path, *, max_bytes: int
    ) -> tuple[list[Path], int]:
        """WADO-RS: fetch every instance of a series into ``folder`` (one file per part).

        Args:
            study_uid: The study.
            series_uid: The series.
            folder: An existing, empty scratch folder.
            max_bytes: The most bytes the answer may hold (PacsError above it).

        Returns:
            The files written and the size of the answer in bytes.
        """
        what = "WADO-RS series retrieve"
        spool = folder / f"wado-{uuid.uuid4().hex}.multipart"
        url = f"{self.base_url}/studies/{study_uid}/series/{series_uid}"
        try:
            with (
                self._talking(what),
                self._http.stream("GET", url, headers={"Accept": WADO_ACCEPT}) as answer,
            ):
                self._check_status(answer, what)
                boundary = _boundary(answer.headers.get("content-type", ""), what)
                size = _spool(answer, spool, max_bytes, what)
            files = split_multipart(spool, boundary, folder, what)
        finally:
            spool.unlink(missing_ok=True)
        return files, size

    def store(self, files: list[Path], study_uid: str | None = None) -> StoreOutcome:
        """STOW-RS: store DICOM files; returns what the PACS stored and refused.

        Raises:
            PacsError: If the PACS is unreachable or refuses the request as a whole.
        """
        what = "STOW-RS store"
        boundary = f"medverse-{uuid.uuid4().hex}"
        url = self.base_url + (f"/studies/{study_uid}" if study_uid else "/studies")
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Content-Length": str(_stow_length(files, boundary)),  # no chunked upload
            "Accept": DICOM_JSON,
        }
        with self._talking(what):
            answer = self._http.post(url, content=_stow_body(files, boundary), headers=headers)
        if answer.status_code >= 400 and answer.status_code != 409:
            self._check_status(answer, what)
        response = _json(answer, what) if answer.content else {}
        if not isinstance(response, dict):
            raise PacsError(f"the PACS answered the {what} with something other than a dataset")
        stored = [tag_text(item, REFERENCED_SOP_INSTANCE_UID)
                  for item in tag_values(response, REFERENCED_SOP_SEQUENCE)
                  if isinstance(item, dict)]  # fmt: skip
        failed = {
            tag_text(item, REFERENCED_SOP_INSTANCE_UID): tag_text(item, FAILURE_REASON)
            for item in tag_values(response, FAILED_SOP_SEQUENCE)
            if isinstance(item, dict)
        }
        if answer.status_code == 409 and not failed:
            self._check_status(answer, what)
        return StoreOutcome(stored, failed)

    @contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Turn httpx failures into clear PacsError/PacsTimeoutError messages."""
        try:
            yield
        except httpx.TimeoutException:
            raise PacsTimeoutError(
                f"the PACS at {self.where} did not answer the {what} within {self.timeout:g} s"
            ) from None
        except httpx.ConnectError:
            raise PacsError(
                f"the PACS at {self.where} is unreachable (cannot connect for the {what})"
            ) from None
        except (httpx.TransportError, httpx.DecodingError) as error:
            raise PacsError(
                f"the connection to the PACS at {self.where} failed during the {what} "
                f"({type(error).__name__})"
            ) from None

    def _check_status(self, answer: httpx.Response, what: str) -> None:
        if answer.status_code in (401, 403):
            raise PacsError(
                f"the PACS at {self.where} refused the {what} (HTTP {answer.status_code}): "
                "check MEDVERSE_PACS_USERNAME and MEDVERSE_PACS_PASSWORD"
            )
        if answer.status_code >= 300:
            raise PacsError(
                f"the PACS at {self.where} answered the {what} with HTTP {answer.status_code}"
            )


def _json(answer: httpx.Response, what: str) -> Any:
    try:
        return answer.json()
    except ValueError:
        raise PacsError(f"the PACS answered the {what} with invalid JSON") from None


def _boundary(content_type: str, what: str) -> bytes:
    if not content_type.lower().startswith("multipart/related"):
        shown = content_type.split(";")[0].strip()[:60] or "no content type"
        raise PacsError(f"the PACS answered the {what} with {shown}, not multipart/related")
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise PacsError(f"the PACS answered the {what} with a multipart body without a boundary")
    return match.group(1).encode("latin-1")


def _spool(answer: httpx.Response, spool: Path, max_bytes: int, what: str) -> int:
    size = 0
    with spool.open("wb") as out:
        for chunk in answer.iter_bytes(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise PacsError(
                    f"the PACS sent more than {max_bytes} bytes for one {what}; "
                    "raise MEDVERSE_PACS_MAX_STUDY_BYTES to import this study"
                )
            out.write(chunk)
    return size


def split_multipart(body: Path, boundary: bytes, folder: Path, what: str) -> list[Path]:
    """Write each part of a multipart/related body (a file) to ``folder``; return the files.

    Raises:
        PacsError: If the body is not well formed or a part is not ``application/dicom``.
    """
    files: list[Path] = []
    if body.stat().st_size == 0:
        return files
    delimiter = b"--" + boundary
    with body.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        position = data.find(delimiter)
        if position < 0:
            raise PacsError(f"the PACS answered the {what} with a malformed multipart body")
        while True:
            position += len(delimiter)
            if data[position : position + 2] == b"--":
                return files
            header_end = data.find(b"\r\n\r\n", position)
            end = data.find(b"\r\n" + delimiter, max(header_end, position))
            if header_end < 0 or end < 0:
                raise PacsError(f"the PACS answered the {what} with a truncated multipart body")
            _check_part_type(data[position:header_end], what)
            target = folder / f"{len(files):06d}.dcm"
            target.write_bytes(data[header_end + 4 : end])
            files.append(target)
            position = end + 2


def _check_part_type(headers: bytes, what: str) -> None:
    for line in headers.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            media = value.split(";")[0].strip().lower()
            if media != "application/dicom":
                raise PacsError(
                    f"the PACS answered the {what} with a {media[:60]} part, not application/dicom"
                )


def _part_head(boundary: str) -> bytes:
    return f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")


def _stow_length(files: list[Path], boundary: str) -> int:
    part = len(_part_head(boundary)) + 2
    return sum(path.stat().st_size + part for path in files) + len(boundary) + 6


def _stow_body(files: list[Path], boundary: str) -> Iterator[bytes]:
    """The multipart/related request body, streamed file by file."""
    for path in files:
        yield _part_head(boundary)
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


class PacsNotConfiguredError(ServiceError):
    """No PACS is configured (503)."""

    status_code = 503


def client_from_settings(settings: Settings) -> DicomWebClient:
    """The client for the configured PACS.

    Raises:
        PacsNotConfiguredError: If ``MEDVERSE_PACS_URL`` is not set.
    """
    if not settings.pacs_url:
        raise PacsNotConfiguredError(
            "no PACS is configured: set MEDVERSE_PACS_URL to its DICOMweb root"
        )
    auth = None
    if settings.pacs_username:
        password = settings.pacs_password.get_secret_value() if settings.pacs_password else ""
        auth = (settings.pacs_username, password)
    return DicomWebClient(settings.pacs_url, timeout=settings.pacs_timeout_seconds, auth=auth)
