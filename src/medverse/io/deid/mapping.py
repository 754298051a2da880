"""The de-identification key file: patient -> pseudonym and date offset, original -> new UID."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from medverse.core.errors import InputError
from medverse.io.atomic import write_text_atomic

MAPPING_FORMAT = "medverse-deid-mapping"
MAPPING_VERSION = 1
# Offsets move dates between ten years and one month into the past.
MIN_OFFSET_DAYS, MAX_OFFSET_DAYS = -3650, -30


@dataclass(frozen=True)
class PatientEntry:
    """How one patient is disguised.

    Attributes:
        pseudonym: Replaces PatientName and PatientID.
        date_offset_days: Added to every date of this patient's objects.
    """

    pseudonym: str
    date_offset_days: int


class DeidMapping:
    """The mapping that makes de-identification consistent across files and runs.

    It holds identities (original patient keys), so it is the user's secret: it is written
    atomically with owner-only permissions and never logged.

    Args:
        path: The JSON file it is loaded from and saved to.
        patients: Original patient key -> entry.
        uids: Original UID -> replacement UID.
    """

    def __init__(self, path: Path, patients: dict[str, PatientEntry], uids: dict[str, str]) -> None:
        self.path = path
        self.patients = patients
        self.uids = uids
        self._changed = False

    @classmethod
    def load(cls, path: str | Path) -> DeidMapping:
        """Read the mapping file, or start an empty mapping if it does not exist yet.

        Raises:
            InputError: If the file exists but is not a medverse mapping.
        """
        path = Path(path)
        if not path.exists():
            return cls(path, {}, {})
        if not path.is_file():
            raise InputError("mapping file is a folder, not a JSON file", path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"mapping file is not readable JSON ({error})", path) from None
        return cls(path, *_parse(data, path))

    def patient(self, key: str) -> PatientEntry:
        """Return the entry of a patient, creating a new pseudonym and offset on first sight."""
        entry = self.patients.get(key)
        if entry is None:
            used = {e.pseudonym for e in self.patients.values()}
            pseudonym = _new_pseudonym(used)
            span = MAX_OFFSET_DAYS - MIN_OFFSET_DAYS + 1
            entry = PatientEntry(pseudonym, MIN_OFFSET_DAYS + secrets.randbelow(span))
            self.patients[key] = entry
            self._changed = True
        return entry

    def uid(self, original: str) -> str:
        """Return the replacement of a UID (a new random ``2.25.`` UID on first sight)."""
        original = original.strip()
        if not original:
            return ""
        new = self.uids.get(original)
        if new is None:
            new = str(generate_uid(prefix=None))
            self.uids[original] = new
            self._changed = True
        return new

    def save(self) -> None:
        """Write the mapping atomically (owner-only permissions) if anything was added."""
        if not self._changed:
            return
        data = {
            "format": MAPPING_FORMAT,
            "version": MAPPING_VERSION,
            "warning": "This file re-identifies de-identified data. Keep it private.",
            "patients": {
                k: {"pseudonym": e.pseudonym, "date_offset_days": e.date_offset_days}
                for k, e in sorted(self.patients.items())
            },
            "uids": dict(sorted(self.uids.items())),
        }
        write_text_atomic(self.path, json.dumps(data, indent=1) + "\n")
        self.path.chmod(0o600)
        self._changed = False


def _parse(data: Any, path: Path) -> tuple[dict[str, PatientEntry], dict[str, str]]:
    if not isinstance(data, dict) or data.get("format") != MAPPING_FORMAT:
        raise InputError(f"not a {MAPPING_FORMAT} file", path)
    if data.get("version") != MAPPING_VERSION:
        raise InputError(f"mapping version {data.get('version')!r} is not supported", path)
    raw_patients, raw_uids = data.get("patients", {}), data.get("uids", {})
    if not isinstance(raw_patients, dict) or not isinstance(raw_uids, dict):
        raise InputError("mapping 'patients' and 'uids' must be JSON objects", path)
    try:
        patients = {
            str(k): PatientEntry(str(v["pseudonym"]), int(v["date_offset_days"]))
            for k, v in raw_patients.items()
        }
    except (KeyError, TypeError, ValueError):
        raise InputError("mapping has a patient entry without pseudonym/offset", path) from None
    return patients, {str(k): str(v) for k, v in raw_uids.items()}


def _new_pseudonym(used: set[str]) -> str:
    while True:
        candidate = f"MV-{secrets.token_hex(4).upper()}"
        if candidate not in used:
            return candidate
