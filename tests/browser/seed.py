"""Seed a service data dir: the sample CT stored, users with tokens, a finished job's results."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from medverse.core.settings import Settings
from medverse.inference.demo import reference_labels_on
from medverse.inference.report import measure, write_report
from medverse.io.dicom import read_series
from medverse.io.mesh import label_meshes, write_glb
from medverse.io.nifti import write_nifti
from medverse.service.app import build_services
from medverse.service.auth.accounts import add_user, issue_token
from medverse.service.studies.store import load_study
from medverse.service.studies.uploads import ReceivedFile
from medverse.service.tables import Job, JobState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ct_abdomen"
USERS = {"alice": "clinician", "bob": "clinician", "rita": "researcher"}


@dataclass(frozen=True)
class Seeded:
    """What the seeded service holds.

    Attributes:
        study_id: The CT study (identified, so researchers may not open it).
        job_id: Its succeeded job with labels, meshes and report.
        tokens: User name -> API token.
    """

    study_id: str
    job_id: str
    tokens: dict[str, str]


def seed(settings: Settings) -> Seeded:
    """Store the sample CT, add the users, and publish reference-label results as a job."""
    services = build_services(settings)
    services.db.create_schema()
    pepper = settings.token_pepper.get_secret_value()
    tokens = {}
    for name, role in USERS.items():
        add_user(services.db, name, role)
        tokens[name] = issue_token(services.db, name, pepper)
    with services.storage.staging("seed") as staging:
        files = []
        for source in sorted((EXAMPLES / "dicom").iterdir()):
            shutil.copy(source, staging / source.name)
            files.append(ReceivedFile(source.name, staging / source.name))
        result = services.ingestor.ingest_files(files, staging, uploaded_by="alice")
    job_id = str(uuid.uuid4())
    with services.db.reading() as session:
        study = load_study(session, result.study_id)
        series_uid = next(s.series_uid for s in study.series if s.is_image)
    with services.storage.staging("results") as folder:
        _write_results(folder)
        services.storage.publish_results(folder, job_id)
        folder.mkdir()  # the staging context removes it again
    with services.db.writing() as session:
        session.add(
            Job(id=job_id, study_id=result.study_id, series_uid=series_uid, model="reference",
                state=JobState.SUCCEEDED.value, progress=1.0, attempts=1, created_by="alice",
                started_at=datetime.now(UTC), finished_at=datetime.now(UTC))
        )  # fmt: skip
    services.db.dispose()
    return Seeded(result.study_id, job_id, tokens)


def _write_results(folder: Path) -> None:
    """Labels, meshes and report of the CT's vendored reference label map."""
    ct = read_series(EXAMPLES / "dicom")
    labels = reference_labels_on(ct, EXAMPLES / "reference_labels.nii.gz")
    write_nifti(labels, folder / "labels.nii.gz")
    write_glb(
        label_meshes(labels, smooth_iterations=5, decimate=0.25), labels, folder / "meshes.glb"
    )
    write_report(measure(labels, source=ct), folder / "report.json")
