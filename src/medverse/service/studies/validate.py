"""Check every uploaded file is DICOM or NIfTI and sort them into one study's batch."""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from medverse.core.errors import DicomError, MedverseError
from medverse.io.dicom.header import (
    DicomHeader,
    check_complete,
    header_of,
    read_dataset,
    text_value,
    uid_from_digest,
)
from medverse.io.nifti import read_nifti
from medverse.io.quiet import quiet_pydicom
from medverse.service.errors import BadRequestError
from medverse.service.storage import is_uid
from medverse.service.studies.uploads import ReceivedFile
from medverse.service.tables import StudyKind

_NIFTI1_HEADER, _NIFTI2_HEADER = 348, 540


@dataclass(frozen=True)
class StudyFacts:
    """What the study list shows of a DICOM study, from one object's header.

    Attributes:
        patient_name: PatientName as stored (``Family^Given``); kept for identified studies only.
        patient_id: PatientID; kept for identified studies only.
        study_date: StudyDate as ``YYYYMMDD`` ("" when absent or malformed).
        description: StudyDescription.
    """

    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    description: str = ""


def study_facts(ds: Dataset) -> StudyFacts:
    """The study-level header fields of a dataset (empty ones where a value cannot be read)."""
    try:
        with quiet_pydicom():  # a malformed name would be quoted in pydicom's warning
            name, pid = text_value(ds, "PatientName"), text_value(ds, "PatientID")
            date, description = text_value(ds, "StudyDate"), text_value(ds, "StudyDescription")
    except Exception:  # a damaged element converts only when read: show nothing for it
        return StudyFacts()
    return StudyFacts(
        patient_name=name[:256],
        patient_id=pid[:64],
        study_date=date if len(date) == 8 and date.isdigit() else "",
        description=description[:256],
    )


@dataclass(frozen=True)
class DicomObject:
    """What the service keeps about one uploaded DICOM object.

    Attributes:
        name: The client's name for it (messages only).
        path: The staged file.
        sop_uid: SOP Instance UID.
        series_uid: Series Instance UID.
        study_uid: Study Instance UID.
        modality: Modality.
        description: Series description.
        rows: Pixel rows (0 for non-image objects).
        columns: Pixel columns.
        is_image: False for SEG, SR, RTSTRUCT and other non-image objects.
        identified: False only when the file says PatientIdentityRemoved = YES.
        study: The study-level fields the study list shows (patient, date, description).
    """

    name: str
    path: Path
    sop_uid: str
    series_uid: str
    study_uid: str
    modality: str
    description: str
    rows: int
    columns: int
    is_image: bool
    identified: bool
    study: StudyFacts = StudyFacts()


@dataclass(frozen=True)
class Batch:
    """One upload, checked: DICOM objects of one study, or one NIfTI image.

    Attributes:
        kind: DICOM or NIfTI.
        study_uid: The StudyInstanceUID (NIfTI: a ``2.25.`` UID from the file's SHA-256).
        dicom: The DICOM objects, one per SOP Instance UID.
        nifti: The staged NIfTI file (``.nii`` or ``.nii.gz``), for a NIfTI upload.
    """

    kind: StudyKind
    study_uid: str
    dicom: tuple[DicomObject, ...] = ()
    nifti: Path | None = None
    skipped: tuple[str, ...] = ()

    @property
    def identified(self) -> bool:
        """True if any object may identify the patient (NIfTI headers hold no demographics)."""
        return any(obj.identified for obj in self.dicom)

    @property
    def facts(self) -> StudyFacts:
        """The study list's fields, from the first object (empty for NIfTI)."""
        return self.dicom[0].study if self.dicom else StudyFacts()


def classify(files: list[ReceivedFile]) -> Batch:
    """Check each file and return the batch they make.

    DICOMDIR indexes and archiver clutter are skipped, and so is a zip entry that is neither
    DICOM nor NIfTI (a README in a PACS export; its name is reported in ``skipped``); a file
    sent on its own that is neither refuses the upload.

    Raises:
        BadRequestError: Naming the first bad file, or when the files span several studies,
            mix DICOM and NIfTI, or hold more than one NIfTI image.
    """
    dicom: dict[str, DicomObject] = {}
    nifti: list[ReceivedFile] = []
    skipped: list[str] = []
    for file in files:
        try:
            kind = _sniff(file)
        except BadRequestError:
            if not file.in_archive:
                raise
            skipped.append(file.name)
            continue
        if kind == "dicom":
            obj = read_dicom(file)
            if obj is not None:
                dicom.setdefault(obj.sop_uid, obj)
        else:
            nifti.append(_checked_nifti(file, compressed=kind == "nifti.gz"))
    if dicom and nifti:
        raise BadRequestError("the upload mixes DICOM and NIfTI files; upload them separately")
    if len(nifti) > 1:
        raise BadRequestError(f"the upload holds {len(nifti)} NIfTI images; upload one at a time")
    if nifti:
        path = nifti[0].path
        return Batch(StudyKind.NIFTI, content_uid(path), nifti=path)
    if not dicom:
        raise BadRequestError("the upload holds no DICOM or NIfTI files")
    studies = {obj.study_uid for obj in dicom.values()}
    if len(studies) > 1:
        raise BadRequestError(
            f"the upload holds {len(studies)} studies; upload one study at a time"
        )
    return Batch(
        StudyKind.DICOM, studies.pop(), dicom=tuple(dicom.values()), skipped=tuple(skipped)
    )


def _sniff(file: ReceivedFile) -> str:
    with file.path.open("rb") as handle:
        head = handle.read(544)
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:2] == b"\x1f\x8b":
        return "nifti.gz"
    sizes = {int.from_bytes(head[:4], order) for order in ("little", "big")}
    if len(head) >= _NIFTI1_HEADER and {_NIFTI1_HEADER, _NIFTI2_HEADER} & sizes:
        return "nifti"
    raise BadRequestError(f"{file.name}: not a DICOM or NIfTI file")


def read_dicom(file: ReceivedFile) -> DicomObject | None:
    """Read one DICOM object whole and check it; None for a DICOMDIR index.

    Raises:
        BadRequestError: If the file is unreadable or truncated, lacks its SOP Instance UID,
            has a malformed UID, or is an image without pixel data.
    """
    try:
        ds = read_dataset(file.path)
        header = header_of(ds, file.path)
    except DicomError:  # its text may quote values: say only what is wrong
        raise BadRequestError(f"{file.name}: not a readable DICOM file") from None
    try:
        check_complete(ds, file.path)
    except DicomError as error:  # names a tag, never a value
        raise BadRequestError(f"{file.name}: {error.problem}") from None
    if header.is_dicomdir:
        return None
    for label, value in (
        ("SOP Instance", header.sop_instance_uid),
        ("Study Instance", header.study_uid),
        ("Series Instance", header.series_uid),
    ):
        if not is_uid(value):
            problem = "lacks a" if not value else "has an invalid"
            raise BadRequestError(f"{file.name}: DICOM file {problem} {label} UID")
    return _dicom_object(file, header, study_facts(ds))


def _dicom_object(file: ReceivedFile, header: DicomHeader, study: StudyFacts) -> DicomObject:
    return DicomObject(
        name=file.name,
        path=file.path,
        sop_uid=header.sop_instance_uid,
        series_uid=header.series_uid,
        study_uid=header.study_uid,
        modality=header.modality[:16],
        description=header.series_description[:256],
        rows=header.rows,
        columns=header.columns,
        is_image=header.is_image,
        identified=not header.identity_removed,
        study=study,
    )


def _checked_nifti(file: ReceivedFile, *, compressed: bool) -> ReceivedFile:
    """Give the staged file its NIfTI suffix and read it whole (catches truncation)."""
    if compressed:
        try:
            with gzip.open(file.path, "rb") as handle:
                head = handle.read(4)
        except (OSError, EOFError):
            raise BadRequestError(
                f"{file.name}: not a DICOM or NIfTI file (bad gzip data)"
            ) from None
        sizes = {int.from_bytes(head, order) for order in ("little", "big")}
        if not {_NIFTI1_HEADER, _NIFTI2_HEADER} & sizes:
            raise BadRequestError(
                f"{file.name}: not a DICOM or NIfTI file (gzip of something else)"
            )
    path = file.path.with_name(file.path.name + (".nii.gz" if compressed else ".nii"))
    os.replace(file.path, path)
    try:
        read_nifti(path)
    except MedverseError as error:
        raise BadRequestError(f"{file.name}: {error.problem}") from None
    return ReceivedFile(file.name, path)


def content_uid(path: Path) -> str:
    """A ``2.25.`` UID derived from a file's SHA-256 (the same file gives the same UID)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return uid_from_digest(digest.digest())
