"""Store an upload as a study: all or nothing, idempotent by SOP Instance UID, de-identified copy.

This is the one way files enter the archive: an HTTP upload, and later a PACS import, stage
their files in a folder and call :meth:`Ingestor.ingest_files`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from medverse.core.logging import get_logger
from medverse.io.deid import deidentify
from medverse.service.db import Database
from medverse.service.errors import BadRequestError, ConflictError
from medverse.service.storage import Storage
from medverse.service.studies.archive import ArchiveLimits, expand_archives
from medverse.service.studies.scrub import scrub_nifti
from medverse.service.studies.uploads import ReceivedFile
from medverse.service.studies.validate import Batch, DicomObject, classify
from medverse.service.tables import Instance, Series, Study, StudyKind

_LOG = get_logger(__name__)
NIFTI_SERIES_MODALITY = "NIFTI"
# Stored images are readable by the service's user only.
OWNER_ONLY = 0o600


@dataclass(frozen=True)
class IngestResult:
    """What an ingest stored.

    Attributes:
        study_id: The study the files belong to.
        created: True if the study is new.
        added: Objects stored now.
        already_present: Objects that were stored before (same SOP Instance UID or file).
        deidentified_study_id: The de-identified copy made for researchers, if any.
        skipped: Zip entries that were neither DICOM nor NIfTI (left out, named).
    """

    study_id: str
    created: bool
    added: int
    already_present: int
    deidentified_study_id: str | None
    skipped: tuple[str, ...] = ()


@dataclass
class _Moves:
    """Files and folders put in place by the current transaction (undone if it fails)."""

    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    def undo(self) -> None:
        for path in reversed(self.files):
            path.unlink(missing_ok=True)
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


class Ingestor:
    """Turns staged files into stored studies.

    Args:
        db: The service database.
        storage: The data-dir layout.
        limits: What a zip upload may unpack to.
    """

    def __init__(self, db: Database, storage: Storage, limits: ArchiveLimits) -> None:
        self.db = db
        self.storage = storage
        self.limits = limits

    def ingest_files(
        self, files: list[ReceivedFile], staging: Path, *, uploaded_by: str
    ) -> IngestResult:
        """Check, de-identify if needed, and store one study's files.

        Zips are unpacked and every file validated first; an identified DICOM study gets a
        de-identified copy (a second study). Both are stored in one transaction under a
        per-study lock: on any failure nothing is stored and the staging folder is left to
        its owner to remove.

        Args:
            files: The staged files (DICOM objects, zips of them, or one NIfTI image).
            staging: A private scratch folder on the data-dir file system.
            uploaded_by: The user name recorded with a new study.

        Raises:
            BadRequestError: For a bad archive or file (naming it), or a mixed upload.
            ConflictError: If identified objects are sent for a study stored as de-identified.
        """
        unpacked = staging / "unpacked"
        unpacked.mkdir()
        batch = classify(expand_archives(files, unpacked, self.limits))
        research = None
        if batch.kind == StudyKind.DICOM and batch.identified:
            research = self._deidentified(batch, staging)
        result = replace(self._commit(batch, research, uploaded_by), skipped=batch.skipped)
        _LOG.info(
            "study %s: %d object(s) stored, %d already present%s",
            result.study_id,
            result.added,
            result.already_present,
            f"; de-identified copy {result.deidentified_study_id}" if research else "",
        )
        return result

    def _deidentified(self, batch: Batch, staging: Path) -> Batch:
        source, target = staging / "deid-source", staging / "deid"
        source.mkdir()
        names: dict[Path, str] = {}
        for number, obj in enumerate(batch.dicom):
            link = source / f"{number:06d}.dcm"
            os.link(obj.path, link)
            names[link] = obj.name
        with _exclusive(self.storage.deid_lock):
            summary = deidentify(source, target, self.storage.deid_mapping)
        if summary.failed:
            bad = summary.failed[0]
            name = names.get(bad.path, "a file")
            raise BadRequestError(f"{name}: cannot be de-identified ({bad.reason})")
        written = [ReceivedFile(f"de-identified {p.name}", p) for p in summary.written]
        research = classify(written)
        if research.identified:  # the profile sets PatientIdentityRemoved=YES on every object
            raise RuntimeError("de-identification left objects marked as identified")
        return research

    def _commit(self, batch: Batch, research: Batch | None, uploaded_by: str) -> IngestResult:
        moves = _Moves()
        try:
            with self.db.writing(lock=f"study:{batch.study_uid}") as session:
                study, created, added, present = self._store(
                    session, batch, uploaded_by, None, moves
                )
                copy_id = None
                if research is not None:
                    self.db.lock(session, f"study:{research.study_uid}")
                    copy = self._store(session, research, uploaded_by, study.id, moves)[0]
                    copy_id = copy.id
        except BaseException:
            moves.undo()
            raise
        return IngestResult(study.id, created, added, present, copy_id)

    def _store(
        self,
        session: Session,
        batch: Batch,
        uploaded_by: str,
        source_id: str | None,
        moves: _Moves,
    ) -> tuple[Study, bool, int, int]:
        study = session.scalar(select(Study).where(Study.study_uid == batch.study_uid))
        created = study is None
        if study is None:
            study = Study(
                id=str(uuid.uuid4()),
                study_uid=batch.study_uid,
                kind=batch.kind.value,
                identified=batch.identified,
                source_study_id=source_id,
                created_by=uploaded_by,
                **_listed_facts(batch),
            )
            session.add(study)
            session.flush()
            moves.folders.append(self.storage.study_dir(study.id))
        elif study.kind != batch.kind.value:
            raise ConflictError(
                f"study {study.id} is stored as {study.kind}, not {batch.kind.value}"
            )
        elif batch.identified and not study.identified:
            raise ConflictError(
                f"study {study.id} is stored as de-identified; refusing identified objects for it"
            )
        if batch.kind == StudyKind.NIFTI:
            added = self._store_nifti(session, study, batch, moves) if created else 0
            return study, created, added, 1 - added
        added = self._store_dicom(session, study, batch.dicom, moves)
        return study, created, added, len(batch.dicom) - added

    def _store_nifti(self, session: Session, study: Study, batch: Batch, moves: _Moves) -> int:
        assert batch.nifti is not None
        name = "image.nii.gz" if batch.nifti.name.endswith(".gz") else "image.nii"
        target = self.storage.study_dir(study.id) / name
        moves.files.append(target)
        scrub_nifti(batch.nifti, target)  # the stored copy is what researchers receive
        target.chmod(OWNER_ONLY)
        session.add(
            Series(
                study_id=study.id,
                series_uid=study.study_uid,
                modality=NIFTI_SERIES_MODALITY,
                path=self.storage.relative(target),
            )
        )
        return 1

    def _store_dicom(
        self, session: Session, study: Study, objects: tuple[DicomObject, ...], moves: _Moves
    ) -> int:
        present = set(
            session.scalars(select(Instance.sop_instance_uid).where(Instance.study_id == study.id))
        )
        series = {
            s.series_uid: s
            for s in session.scalars(select(Series).where(Series.study_id == study.id))
        }
        added = 0
        for obj in objects:
            if obj.sop_uid in present:
                continue
            row = series.get(obj.series_uid) or self._new_series(session, study, obj, series)
            target = self.storage.absolute(row.path) / f"{obj.sop_uid}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(obj.path, target)
            target.chmod(OWNER_ONLY)  # like the de-identification mapping: it names patients
            moves.files.append(target)
            session.add(
                Instance(
                    study_id=study.id,
                    series_id=row.id,
                    sop_instance_uid=obj.sop_uid,
                    path=self.storage.relative(target),
                )
            )
            present.add(obj.sop_uid)
            added += 1
        return added

    def _new_series(
        self, session: Session, study: Study, obj: DicomObject, known: dict[str, Series]
    ) -> Series:
        folder = self.storage.study_dir(study.id) / "dicom" / obj.series_uid
        row = Series(
            study_id=study.id,
            series_uid=obj.series_uid,
            modality=obj.modality,
            description=obj.description,
            rows=obj.rows,
            columns=obj.columns,
            is_image=obj.is_image,
            path=self.storage.relative(folder),
        )
        session.add(row)
        session.flush()
        known[obj.series_uid] = row
        return row


def _listed_facts(batch: Batch) -> dict[str, str]:
    """The study row's header fields; the patient's name and ID only for an identified study."""
    facts = batch.facts
    identified = batch.identified
    return {
        "patient_name": facts.patient_name if identified else "",
        "patient_id": facts.patient_id if identified else "",
        "study_date": facts.study_date,
        "description": facts.description,
    }


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (across threads and processes)."""
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
