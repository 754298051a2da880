"""A study whose every text tag holds HTML/JS payloads, built from the example CT and uploaded."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

from medverse.core.settings import Settings

EXAMPLE_DICOM = Path(__file__).resolve().parents[2] / "examples" / "ct_abdomen" / "dicom"
# Each breaks out of an HTML attribute or opens an element if the page parses it as markup.
MODALITY = '<img src=x a="'
SERIES = '" onerror="window.__pwned=1" b='
LINK = "<a href=//ev.il>"
TEXT_TAGS = {
    "Modality": MODALITY,
    "SeriesDescription": SERIES,
    "StudyDescription": f"{LINK}study</a>",
    "PatientName": "<b>Evil^<a href=//ev.il>",
    "PatientID": "<svg onload=alert(1)>",
    "InstitutionName": f"{LINK}hospital",
    "ReferringPhysicianName": '"><img src=x onerror=alert(1)>',
    "BodyPartExamined": "<i>",
    "ProtocolName": f"{LINK}protocol",
    "StudyID": "<u>",
    "AccessionNumber": "<s>",
    "Manufacturer": "<script>window.__pwned=1</script>",
}


def write_payload_series(folder: Path) -> list[Path]:
    """The example CT's slices with new UIDs and every text tag above; returns the files."""
    with warnings.catch_warnings():  # the payloads are invalid CS/PN values: that is the point
        warnings.simplefilter("ignore")
        logging.getLogger("pydicom").disabled = True
        try:
            return _write(folder)
        finally:
            logging.getLogger("pydicom").disabled = False


def _write(folder: Path) -> list[Path]:
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for source in sorted(EXAMPLE_DICOM.iterdir()):
        dataset = pydicom.dcmread(source)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        for keyword, value in TEXT_TAGS.items():
            setattr(dataset, keyword, value)
        path = folder / source.name
        dataset.save_as(path)
        files.append(path)
    return files


def upload(base_url: str, token: str, files: list[Path]) -> dict[str, object]:
    """POST the files as one study upload; returns the created study."""
    parts = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in files]
    headers = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{base_url}/api/studies", files=parts, headers=headers, timeout=120)
    assert answer.status_code == 201, answer.text[:500]
    study: dict[str, object] = answer.json()
    return study


def admin_token(settings: Settings, name: str = "ada") -> str:
    """Add an admin through the public CLI (the service's own database) and issue a token."""
    data = ["--data-dir", str(settings.data_dir)]
    cli = [sys.executable, "-m", "medverse.cli", "users"]
    subprocess.run([*cli, "add", name, "--role", "admin", *data], check=True, capture_output=True)
    issued = subprocess.run([*cli, "token", name, *data], check=True, capture_output=True)
    return issued.stdout.decode().strip().splitlines()[-1]
