"""De-identify a DICOM folder per PS3.15 Annex E, consistently across files and runs.

What is applied (``medverse.io.deid.profile`` holds the table as data):

* The **Basic Application Level Confidentiality Profile** (Table E.1-1, DICOM 2024b) for the
  attributes that occur in CT, MR and SEG objects and their request/procedure-step data:
  X removes, Z empties, D puts in a dummy value, U remaps UIDs. Combined codes resolve to
  emptying (X/Z, Z/D, X/Z/D) or removal (X/D); sequences with an X in their code go whole.
  Any other person name (PN) is emptied as well, stricter than the profile.
* **PatientName and PatientID** become one pseudonym per patient (``MV-XXXXXXXX``); the
  birth date is emptied.
* **Retain Longitudinal Temporal Information with Modified Dates Option**: every DA/DT value
  (in sequences too) moves by ONE per-patient offset of -3650..-30 days, so intervals between
  studies survive; dates the profile removes outright (X) are removed. Times (TM and the time
  part of DT) are kept unchanged.
* **UIDs**: every instance-type UID of the profile (study, series, SOP instance, frame of
  reference, ReferencedSOPInstanceUID and the other references, file meta
  MediaStorageSOPInstanceUID) is replaced by a random ``2.25.`` UID through one map, so series
  and the SEG/SR objects that reference them still match. An empty UID stays empty; an empty
  dataset SOPInstanceUID/SOPClassUID is filled from the file meta first.
* **Private tags** are all removed (the Retain Safe Private Option is not applied), as are
  curve and overlay data. ``keep_descriptions`` keeps study/series description and protocol
  name on the user's word that they hold no identity (the profile would remove them).
* PatientIdentityRemoved = YES, DeidentificationMethod(CodeSequence) = 113100 + 113107 and
  LongitudinalTemporalInformationModified = MODIFIED are set.

The mapping (patient key -> pseudonym and offset, original -> new UID) lives in a JSON file
the user names and keeps private; a second run with the same file gives the same pseudonyms,
offsets and UIDs. Pixel data and the transfer syntax are left byte for byte as they were
(compressed data is not decoded). Not covered: identity burned into the pixels (Clean Pixel
Data Option), free text inside SR content (Clean Structured Content Option), and file or
folder names of the input (outputs are named by their new UIDs). Nothing identifying is
logged. Each output file is written atomically; non-DICOM files are skipped and reported, and
truncated or malformed DICOM files are reported as failed with nothing written for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from medverse.core.errors import DicomError, InputError, NotDicomError
from medverse.core.logging import get_logger
from medverse.io.atomic import atomic_path
from medverse.io.deid.dataset import deidentify_dataset
from medverse.io.deid.mapping import DeidMapping
from medverse.io.dicom.geometry import sop_instance_uid
from medverse.io.dicom.header import DICOMDIR_SOP_CLASS, read_dataset, sop_class_uid
from medverse.io.dicom.scan import SkippedFile
from medverse.io.quiet import quiet_pydicom

__all__ = ["DeidSummary", "deidentify"]

_log = get_logger(__name__)


@dataclass(frozen=True)
class DeidSummary:
    """What a de-identification run did.

    Attributes:
        written: The de-identified files, ``<out>/<new series UID>/<new SOP UID>.dcm``.
        skipped: Input files that are not DICOM objects to de-identify (with the reason).
        failed: DICOM files that are truncated or malformed; nothing was written for them.
        patients: How many distinct patients the written files belong to.
        mapping_file: The mapping file that was used and updated.
    """

    written: tuple[Path, ...]
    skipped: tuple[SkippedFile, ...]
    failed: tuple[SkippedFile, ...]
    patients: int
    mapping_file: Path


class _BrokenFileError(Exception):
    """A DICOM file that cannot be de-identified safely."""


def deidentify(
    src: str | Path,
    dst: str | Path,
    mapping_file: str | Path,
    *,
    keep_descriptions: bool = False,
) -> DeidSummary:
    """De-identify every DICOM file under ``src`` into ``dst`` (see the module docstring).

    Args:
        src: A DICOM file or a folder (searched recursively).
        dst: The output folder; must not be ``src`` or inside it.
        mapping_file: JSON mapping to reuse and extend (created if missing). It re-identifies
            the data: keep it private and out of ``dst``.
        keep_descriptions: Keep StudyDescription, SeriesDescription and ProtocolName.

    Returns:
        The summary: files written, skipped, failed, and the number of patients.

    Raises:
        InputError: If ``src`` is missing, ``dst`` lies inside it, the mapping file is not a
            medverse mapping, or no DICOM file was found at all.
    """
    src, dst, mapping_path = Path(src), Path(dst), Path(mapping_file)
    _check_paths(src, dst, mapping_path)
    run = _Run(dst, DeidMapping.load(mapping_path), keep_descriptions)
    files = list(_walk(src))
    try:
        with quiet_pydicom():
            for file in files:
                run.process(file)
    finally:
        run.mapping.save()
    if not run.written and not run.failed:
        raise InputError(f"no DICOM files found ({len(run.skipped)} other file(s) skipped)", src)
    _log.info(
        "de-identified %d file(s) of %d patient(s); %d skipped, %d failed",
        len(run.written),
        len(run.patients),
        len(run.skipped),
        len(run.failed),
    )
    return DeidSummary(
        tuple(run.written), tuple(run.skipped), tuple(run.failed), len(run.patients), mapping_path
    )


def _check_paths(src: Path, dst: Path, mapping_path: Path) -> None:
    if not src.exists():
        raise InputError("input not found", src)
    source, target = src.resolve(), dst.resolve()
    if target == source or (src.is_dir() and source in target.parents):
        raise InputError("output folder must not be the input folder or inside it", dst)
    if target.exists() and not target.is_dir():
        raise InputError("output exists and is not a folder", dst)
    if target in mapping_path.resolve().parents:
        raise InputError("keep the mapping file out of the de-identified output", mapping_path)


@dataclass
class _Run:
    """The state of one run: where to write, the mapping, and the outcome so far."""

    dst: Path
    mapping: DeidMapping
    keep_descriptions: bool
    written: dict[Path, Path] = field(default_factory=dict)  # output -> input
    skipped: list[SkippedFile] = field(default_factory=list)
    failed: list[SkippedFile] = field(default_factory=list)
    patients: set[str] = field(default_factory=set)

    def process(self, file: Path) -> None:
        """De-identify one file into ``dst`` and record the outcome."""
        try:
            ds = _read_checked(file)
        except _BrokenFileError as error:
            self.failed.append(SkippedFile(file, str(error)))
            return
        if isinstance(ds, SkippedFile):
            self.skipped.append(ds)
            return
        try:
            entry = deidentify_dataset(ds, self.mapping, keep_descriptions=self.keep_descriptions)
        except Exception as error:  # a damaged nested element surfaces only when parsed
            # The message may quote a value (PHI): report only the kind of error.
            self.failed.append(SkippedFile(file, f"malformed DICOM ({type(error).__name__})"))
            return
        target = _target(self.dst, ds)
        if target in self.written:
            self.failed.append(
                SkippedFile(file, f"same SOP Instance UID as {self.written[target]}")
            )
            return
        with atomic_path(target) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        self.written[target] = file
        self.patients.add(entry.pseudonym)


def _read_checked(file: Path) -> Dataset | SkippedFile:
    """Read a whole DICOM file; a SkippedFile for non-DICOM, _BrokenFileError for a damaged one."""
    try:
        ds = read_dataset(file, complete=True)
    except NotDicomError as error:
        return SkippedFile(file, error.problem)
    except DicomError as error:
        raise _BrokenFileError(error.problem) from None
    if sop_class_uid(ds) == DICOMDIR_SOP_CLASS:
        return SkippedFile(file, "DICOMDIR index (rebuild it for the de-identified files)")
    if not sop_instance_uid(ds):
        raise _BrokenFileError("no SOP Instance UID")
    return ds


def _target(dst: Path, ds: Dataset) -> Path:
    series = str(ds.get("SeriesInstanceUID", "") or "") or "series-without-uid"
    return dst / series / f"{ds.SOPInstanceUID}.dcm"


def _walk(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            yield Path(root) / name
