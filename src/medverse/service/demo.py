"""The service demo: the sample studies stored, an admin token, jobs queued, ready to serve."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from medverse.core.errors import InputError
from medverse.core.settings import Settings
from medverse.service.app import build_services
from medverse.service.auth.accounts import add_user, issue_token
from medverse.service.deps import Services
from medverse.service.jobs.store import create_job
from medverse.service.studies.store import load_study, segmentation_input
from medverse.service.studies.uploads import ReceivedFile
from medverse.service.tables import Job, Study, User

ADMIN = "demo-admin"
CT_DICOM = Path("ct_abdomen") / "dicom"
MR_IMAGES = Path("hippocampus") / "imagesTr"


@dataclass
class DemoService:
    """What :func:`prepare_demo` set up.

    Attributes:
        settings: The service settings (data dir, models dir).
        token: A fresh API token of the ``demo-admin`` user (earlier ones are revoked).
        studies: Stored study id -> what it is ("CT abdomen", "MR hippocampus_001", ...).
        jobs: Ids of the jobs queued now (one per study and matching model, never twice).
    """

    settings: Settings
    token: str
    studies: dict[str, str] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)


def prepare_demo(settings: Settings, examples: Path) -> DemoService:
    """Store the sample studies, make the admin token, and queue a job per study and model.

    Running it again stores nothing twice and queues no job twice; it only issues a new token.
    CT studies get every CT model of the models folder, the hippocampus NIfTI images every MR
    model; with no model there are simply no jobs.

    Args:
        settings: Service settings (``data_dir`` and ``models_dir`` are used).
        examples: The vendored ``examples/`` folder.

    Raises:
        InputError: If the sample data is missing.
    """
    if not (examples / CT_DICOM).is_dir():
        raise InputError("sample data not found; pass --examples DIR", examples / CT_DICOM)
    services = build_services(settings)
    services.db.create_schema()
    try:
        demo = DemoService(settings, _admin_token(services))
        demo.studies[_ingest(services, sorted((examples / CT_DICOM).iterdir()))] = "CT abdomen"
        for image in sorted((examples / MR_IMAGES).glob("*.nii.gz")):
            name = image.name.removesuffix(".nii.gz")
            demo.studies[_ingest(services, [image])] = f"MR {name}"
        demo.jobs = _queue_jobs(services, demo.studies)
    finally:
        services.db.dispose()
    return demo


def _admin_token(services: Services) -> str:
    with services.db.reading() as session:
        exists = session.scalar(select(User.id).where(User.name == ADMIN)) is not None
    if not exists:
        add_user(services.db, ADMIN, "admin")
    pepper = services.settings.token_pepper.get_secret_value()
    return issue_token(services.db, ADMIN, pepper, revoke_others=True)


def _ingest(services: Services, files: list[Path]) -> str:
    """Store one study's files through the same checks as an upload; return its id."""
    with services.storage.staging("demo") as staging:
        received = staging / "received"
        received.mkdir()
        staged = []
        for number, path in enumerate(files):
            copy = received / f"{number:06d}"
            copy.write_bytes(path.read_bytes())
            staged.append(ReceivedFile(path.name, copy))
        return services.ingestor.ingest_files(staged, staging, uploaded_by=ADMIN).study_id


def _queue_jobs(services: Services, studies: dict[str, str]) -> list[str]:
    queued = []
    for model in services.catalog.available():
        for study_id, what in studies.items():
            if not what.startswith(f"{model.modality} "):
                continue
            with services.db.reading() as session:
                study: Study = load_study(session, study_id)
                done = session.scalar(
                    select(Job.id).where(Job.study_id == study_id, Job.model == model.name)
                )
                series = segmentation_input(study, None).series_uid
            if done is None:
                job = create_job(
                    services.db,
                    study_id=study_id,
                    series_uid=series,
                    model=model.name,
                    created_by=ADMIN,
                )
                queued.append(job.id)
    return queued
