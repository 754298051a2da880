"""What the study list is told: patient (clinicians only), study date, description, series."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import inspect, text

from medverse.core.settings import Settings
from medverse.service.db import Database, open_database
from medverse.service.tables import Study
from tests.conftest import MR_STUDY
from tests.service.conftest import Api, insert_study

LISTED = ("patient_name", "patient_id", "study_date", "description")


def _mr_paths() -> list[Path]:
    """The first image of each series of the real brain MR study (4 MR series).

    Its fifth folder, a hippocampus crop, is another study (SOURCE.md) and is left out. The
    study is marked de-identified (PatientIdentityRemoved YES; TCIA's pseudonym as the name).
    """
    folders = sorted(f for f in MR_STUDY.iterdir() if f.is_dir() and f.name != "11_HCropVolume")
    return [sorted(folder.glob("*.dcm"))[0] for folder in folders]


def _files(datasets: list[pydicom.Dataset]) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = []
    for number, ds in enumerate(datasets):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files.append(("files", (f"{number}.dcm", buffer.getvalue(), "application/dicom")))
    return files


def _identified_mr() -> list[pydicom.Dataset]:
    """The MR as the scanner would send it: new UIDs, a patient name and ID, not de-identified."""
    study_uid = generate_uid()
    datasets = []
    for path in _mr_paths():
        ds = pydicom.dcmread(path)
        del ds.PatientIdentityRemoved
        ds.PatientName, ds.PatientID = "Doe^Jane^^Dr", "MRN-0042"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        datasets.append(ds)
    return datasets


def _stored_date(api: Api, study_id: str) -> str:
    stored = next((api.settings.data_dir / "studies" / study_id).rglob("*.dcm"))
    value = str(pydicom.dcmread(stored, stop_before_pixels=True).StudyDate)
    return f"{value[:4]}-{value[4:6]}-{value[6:]}"


def _listed(api: Api, headers: dict[str, str]) -> list[dict[str, Any]]:
    answer = api.client.get("/api/studies", headers=headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_each_role_gets_date_description_series_and_the_patient_only_if_clinical(
    api: Api,
) -> None:
    mr = [pydicom.dcmread(path) for path in _mr_paths()]
    assert api.client.post("/api/studies", files=_files(mr), headers=api.admin).status_code == 201
    sent = api.client.post("/api/studies", files=_files(_identified_mr()), headers=api.clinician)
    assert sent.status_code == 201, sent.text

    for headers in (api.clinician, api.admin):
        studies = {s["id"]: s for s in _listed(api, headers)}
        identified = studies[sent.json()["id"]]
        assert (identified["patient_name"], identified["patient_id"]) == ("Doe, Jane", "MRN-0042")
        copy = studies[sent.json()["deidentified_study_id"]]
        assert copy["study_date"] == _stored_date(api, copy["id"])  # what de-identification left
        for study in studies.values():
            assert study is copy or study["study_date"] == "2020-01-21"
            assert [s["modality"] for s in study["series"]] == ["MR"] * 4  # one row per series
        for study in (s for s in studies.values() if s is not copy):  # the copy's are removed
            assert len({s["description"] for s in study["series"]}) == 4
        for other in set(studies) - {sent.json()["id"]}:  # uploaded de-identified, or the copy
            assert (studies[other]["patient_name"], studies[other]["patient_id"]) == (None, None)
        assert identified["description"] == mr[0].StudyDescription
    researcher = _listed(api, api.researcher)
    assert len(researcher) == 2 and not any(s["identified"] for s in researcher)
    assert all(s["patient_name"] is None and s["patient_id"] is None for s in researcher)
    text_seen = api.client.get("/api/studies", headers=api.researcher).text
    assert not any(word in text_seen for word in ("Doe", "Jane", "MRN-0042", "Albus"))


def test_a_database_from_before_the_listed_fields_gets_them_at_start(
    settings: Settings, db: Database
) -> None:
    study_id = insert_study(db)
    with db.engine.begin() as connection:
        for column in LISTED:
            connection.execute(text(f"ALTER TABLE studies DROP COLUMN {column}"))

    reopened = open_database(settings)  # what `serve` does at start-up
    try:
        columns = {c["name"] for c in inspect(reopened.engine).get_columns("studies")}
        with reopened.reading() as session:
            study = session.get(Study, study_id)
            assert study is not None
            values = [getattr(study, column) for column in LISTED]
    finally:
        reopened.dispose()
    assert set(LISTED) <= columns
    assert values == ["", "", "", ""]
