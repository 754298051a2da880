"""Volumes a room annotation shows, measured by the server from the study's segmentation."""

from __future__ import annotations

import json

from sqlalchemy import select

from medverse.service.db import Database
from medverse.service.storage import Storage
from medverse.service.tables import Job, JobState


class VolumeMeter:
    """Looks up a labelled structure's volume in the study's newest succeeded job's report.

    The report is what the worker measured on the label map it wrote, so the value a room
    shows is the data's, never a client's.

    Args:
        db: The service database.
        storage: Where job results are.
    """

    def __init__(self, db: Database, storage: Storage) -> None:
        self.db = db
        self.storage = storage

    def volume_ml(self, study_id: str, label: int) -> float | None:
        """The volume of ``label`` in mL, or None if no succeeded job of the study measured it."""
        with self.db.reading() as session:
            job_id = session.scalar(
                select(Job.id)
                .where(Job.study_id == study_id, Job.state == JobState.SUCCEEDED.value)
                .order_by(Job.finished_at.desc())
                .limit(1)
            )
        if job_id is None:
            return None
        report = self.storage.results_dir(job_id) / "report.json"
        try:
            structures = json.loads(report.read_text())["structures"]
        except (OSError, ValueError, KeyError):
            return None
        found = [s["volume_ml"] for s in structures if s.get("value") == label]
        return round(float(found[0]), 3) if found else None
