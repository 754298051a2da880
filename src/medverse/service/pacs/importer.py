"""Pull a study from the PACS over DICOMweb (QIDO-RS, WADO-RS) and check what arrived."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from medverse.io.quiet import quiet_pydicom
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


@dataclass(frozen=True)
class DicomHeader:
    """The UIDs of one DICOM file."""

    sop: str
    series: str
    study: str
    referenced_series: str | None = None


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
            if (header.study, header.series) != (study_uid, series_uid):
                raise PacsError(f"the PACS sent an object of another series for {series_uid}")
            arrived[header.sop] = path
        if missing := listed - arrived.keys():
            raise PacsError(
                f"the PACS listed {len(listed)} instance(s) of series {series_uid} but sent "
                f"only {len(listed) - len(missing)} of them"
            )
        files += [ReceivedFile(f"PACS object {sop}", path) for sop, path in arrived.items()]
    return files


def read_header(path: Path, problem: str) -> DicomHeader:
    """The UIDs of a DICOM file (pixel data not read).

    Raises:
        PacsError: With ``problem`` if the file is not readable DICOM or lacks its UIDs.
    """
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        uids = (str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID))
    except Exception:  # pydicom raises many kinds, and its messages may quote patient data
        raise PacsError(problem) from None
    if not all(is_uid(uid) for uid in uids):
        raise PacsError(problem)
    references = ds.get("ReferencedSeriesSequence") or []
    referenced = str(references[0].get("SeriesInstanceUID", "")) if references else ""
    return DicomHeader(*uids, referenced_series=referenced or None)


def _listed_uid(dataset: dict[str, Any], tag: str, kind: str) -> str:
    uid = tag_text(dataset, tag)
    if not is_uid(uid):
        raise PacsError(f"the PACS listed a {kind} without a valid UID")
    return uid
