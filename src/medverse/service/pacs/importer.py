"""Pull a study from the PACS over DICOMweb (QIDO-RS, WADO-RS) and check what arrived."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medverse.core.errors import DicomError
from medverse.io.dicom.header import DicomHeader
from medverse.io.dicom.header import read_header as read_dicom_header
from medverse.service.deps import Services
from medverse.service.errors import BadRequestError, NotFoundError
from medverse.service.pacs.dicomweb import (
    SERIES_INSTANCE_UID,
    SOP_INSTANCE_UID,
    DicomWebClient,
    PacsError,
    client_from_settings,
    tag_text,
)
from medverse.service.storage import is_uid
from medverse.service.studies.ingest import IngestResult
from medverse.service.studies.uploads import ReceivedFile


def import_study(services: Services, study_uid: str, *, uploaded_by: str) -> IngestResult:
    """Retrieve one study from the configured PACS and ingest it (all or nothing).

    Raises:
        PacsNotConfiguredError: Without ``MEDVERSE_PACS_URL``.
        NotFoundError: If the PACS has no such study.
        PacsError: If the PACS fails, or sends objects that are missing, foreign or unreadable.
    """
    settings = services.settings
    with client_from_settings(settings) as client, services.storage.staging("pacs") as staging:
        received = staging / "received"
        received.mkdir()
        files = fetch_study(client, study_uid, received, settings.pacs_max_study_bytes)
        try:
            return services.ingestor.ingest_files(files, staging, uploaded_by=uploaded_by)
        except BadRequestError as error:
            raise PacsError(
                f"the PACS sent an object the archive refuses: {error.detail}"
            ) from None


def fetch_study(
    client: DicomWebClient, study_uid: str, folder: Path, max_bytes: int
) -> list[ReceivedFile]:
    """QIDO-RS the study's series and instances, WADO-RS each series; check what arrived.

    Raises:
        NotFoundError: If the PACS lists no series for the study.
        PacsError: If an object is unreadable, belongs elsewhere, or a listed one is missing.
    """
    series = [
        _listed_uid(s, SERIES_INSTANCE_UID, "series") for s in client.search_series(study_uid)
    ]
    if not series:
        raise NotFoundError(f"the PACS has no study {study_uid}")
    files: list[ReceivedFile] = []
    used = 0
    for number, series_uid in enumerate(dict.fromkeys(series)):
        listed = {
            _listed_uid(i, SOP_INSTANCE_UID, "instance")
            for i in client.search_instances(study_uid, series_uid)
        }
        target = folder / f"series-{number:04d}"
        target.mkdir()
        paths, size = client.retrieve_series(
            study_uid, series_uid, target, max_bytes=max(max_bytes - used, 1)
        )
        used += size
        arrived: dict[str, Path] = {}
        for path in paths:
            header = read_header(path, "the PACS sent an object that is not readable DICOM")
            if (header.study_instance_uid, header.series_instance_uid) != (study_uid, series_uid):
                raise PacsError(f"the PACS sent an object of another series for {series_uid}")
            arrived[header.sop_instance_uid] = path
        if missing := listed - arrived.keys():
            raise PacsError(
                f"the PACS listed {len(listed)} instance(s) of series {series_uid} but sent "
                f"only {len(listed) - len(missing)} of them"
            )
        files += [ReceivedFile(f"PACS object {sop}", path) for sop, path in arrived.items()]
    return files


def read_header(path: Path, problem: str) -> DicomHeader:
    """The header of a DICOM file (pixel data not read), with valid SOP, series and study UIDs.

    Raises:
        PacsError: With ``problem`` if the file is not readable DICOM or lacks its UIDs.
    """
    try:
        header = read_dicom_header(path)
    except DicomError:  # its text may quote patient data
        raise PacsError(problem) from None
    uids = (header.sop_instance_uid, header.series_instance_uid, header.study_instance_uid)
    if not all(is_uid(uid) for uid in uids):
        raise PacsError(problem)
    return header


def _listed_uid(dataset: dict[str, Any], tag: str, kind: str) -> str:
    uid = tag_text(dataset, tag)
    if not is_uid(uid):
        raise PacsError(f"the PACS listed a {kind} without a valid UID")
    return uid
