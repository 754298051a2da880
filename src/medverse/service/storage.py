"""Where the service keeps files: studies, results, staging and trash under the data dir."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(value: str) -> bool:
    """True for a syntactically valid DICOM UID (digits and dots, at most 64 characters)."""
    return len(value) <= 64 and bool(_UID.match(value))


class Storage:
    """The data-dir layout; every path it hands out is built from ids and UIDs, never input names.

    Layout: ``studies/<study_id>/dicom/<series_uid>/<sop_uid>.dcm`` (or
    ``studies/<study_id>/image.nii.gz``), ``results/<job_id>/``, ``staging/`` for uploads and
    result bundles being written, ``trash/`` for folders on their way out, and ``private/``
    for the de-identification mapping. All of them sit on one file system, so moving a
    finished folder into place is a single rename.

    Args:
        data_dir: The service's data folder (created if needed).
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir).expanduser().resolve()
        for name in ("studies", "results", "staging", "trash", "private"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "private", 0o700)

    def study_dir(self, study_id: str) -> Path:
        """The folder of one study."""
        return self.root / "studies" / study_id

    def results_dir(self, job_id: str) -> Path:
        """The folder of one job's published results."""
        return self.root / "results" / job_id

    def absolute(self, relative: str) -> Path:
        """Resolve a path stored in the database (relative to the data dir)."""
        return self.root / relative

    def relative(self, path: Path) -> str:
        """The database form of a path inside the data dir."""
        return path.relative_to(self.root).as_posix()

    @property
    def deid_mapping(self) -> Path:
        """The de-identification mapping file (it re-identifies: kept private)."""
        return self.root / "private" / "deid-mapping.json"

    @property
    def deid_lock(self) -> Path:
        """The lock file that serialises de-identification runs across processes."""
        return self.root / "private" / "deid.lock"

    @contextmanager
    def staging(self, prefix: str) -> Iterator[Path]:
        """A fresh folder under ``staging/``, removed at the end whatever happens."""
        folder = self.root / "staging" / f"{prefix}-{uuid.uuid4().hex}"
        folder.mkdir(mode=0o700)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish_results(self, staged: Path, job_id: str) -> Path:
        """Move a finished result folder into ``results/<job_id>`` in one rename.

        A folder already there (left by a run that crashed before it was recorded) is
        replaced, so a job never has two result sets.
        """
        target = self.results_dir(job_id)
        if target.exists():
            self.discard(target)
        os.replace(staged, target)
        return target

    def discard(self, path: Path) -> None:
        """Remove a folder: first renamed into ``trash/`` (atomic), then deleted."""
        if not path.exists():
            return
        doomed = self.root / "trash" / f"{path.name}-{uuid.uuid4().hex}"
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def sweep(self, older_than_seconds: float = 86_400.0) -> int:
        """Remove staging and trash entries left behind by a crash; return how many.

        Only old entries go: a fresh one may belong to a live upload or job of another
        process sharing the data dir.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        for folder in (self.root / "staging", self.root / "trash"):
            for entry in folder.iterdir():
                if entry.lstat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
        return removed

    def redact(self, text: str) -> str:
        """Replace the data-dir prefix in a message by ``<data>`` (no server paths in answers)."""
        return text.replace(str(self.root), "<data>")
