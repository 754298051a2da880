"""The one DICOM header reader: every dcmread, a typed header, and the one stand-in UID rule."""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medverse.core.errors import DicomError, NotDicomError, error_text
from medverse.io.dicom.fastheader import FastHeader, read_fast_header
from medverse.io.dicom.geometry import Frame, frames_from_header, sop_instance_uid
from medverse.io.dicom.layout import PixelLayout, layout_of
from medverse.io.dicom.mosaic import mosaic_count, mosaic_frames
from medverse.io.dicom.values import ascii_values, element_value, int_value
from medverse.io.quiet import quiet_pydicom

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG", "FID", "DOC", "RWV"}
    | {"AU", "ECG", "HD", "PLAN", "RAW"}
)
NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registration, fiducials, segmentation, surfaces
    "1.2.840.10008.5.1.4.1.1.67",  # real world value mapping
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF / CDA
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT structure set
    "1.2.840.10008.5.1.4.1.1.481.4",  # RT beams treatment record
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT plan
)
# What identifies a study, and a series inside its study, when the file leaves the UID empty.
STUDY_IDENTITY = (
    "PatientID",
    "PatientName",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
)
SERIES_IDENTITY = (
    "FrameOfReferenceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
)
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class DicomHeader:
    """What medverse needs from one DICOM object's header (no patient names or IDs).

    Attributes:
        path: The file.
        sop_class_uid: SOPClassUID (file meta MediaStorageSOPClassUID when empty).
        sop_instance_uid: SOPInstanceUID (file meta MediaStorageSOPInstanceUID when empty).
        study_instance_uid: StudyInstanceUID as stored ("" when empty).
        series_instance_uid: SeriesInstanceUID as stored ("" when empty).
        study_uid: The study UID, or its :func:`stand_in_uid` when the file leaves it empty.
        series_uid: The series UID, or its :func:`stand_in_uid` when the file leaves it empty.
        frame_of_reference_uid: FrameOfReferenceUID ("" when absent).
        modality: Modality, e.g. "CT", "MR", "SEG".
        series_description: SeriesDescription.
        series_number: SeriesNumber as text.
        rows: Pixel rows (0 when absent).
        columns: Pixel columns (0 when absent).
        number_of_frames: NumberOfFrames (1 when absent).
        identity_removed: True when the file says PatientIdentityRemoved = YES.
        referenced_series_uid: The first ReferencedSeriesSequence item's SeriesInstanceUID
            (what a SEG was made on), "" when there is none.
        frames: The image planes and their geometry (image objects with a usable geometry).
        frame_error: Why the geometry is unusable, or None.
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    modality: str
    series_description: str
    series_number: str
    rows: int
    columns: int
    number_of_frames: int
    identity_removed: bool
    referenced_series_uid: str = ""
    frames: tuple[Frame, ...] = field(default=(), repr=False)
    frame_error: str | None = None

    @property
    def is_dicomdir(self) -> bool:
        """True for a DICOMDIR index (a media directory, not an object of any series)."""
        return self.sop_class_uid == DICOMDIR_SOP_CLASS

    @property
    def is_image(self) -> bool:
        """False for SEG, RTSTRUCT, SR and the other objects that are not image volumes."""
        return is_image_object(self.modality, self.sop_class_uid)


def is_image_object(modality: str, sop_class_uid: str) -> bool:
    """Tell image objects from SEG, SR, RT and other non-image objects by modality and class."""
    if modality.upper() in NON_IMAGE_MODALITIES:
        return False
    return not sop_class_uid.startswith(NON_IMAGE_SOP_PREFIXES)


def stand_in_uid(kind: str, values: Iterable[str]) -> str:
    """The one rule for a UID the files leave empty: ``2.25.`` + 128 bits of SHA-256.

    The digest covers the kind ("study" or "series") and the identifying values, so the
    same objects always get the same UID, whichever folder or upload they come from. The
    result is a valid UID (PS3.5 B.2, UUID-derived form) of at most 44 characters.

    Args:
        kind: What the UID stands in for.
        values: The header values that identify it.
    """
    return uid_from_digest(hashlib.sha256("|".join([kind, *values]).encode("utf-8")).digest())


def uid_from_digest(digest: bytes) -> str:
    """A ``2.25.`` UID (PS3.5 B.2) from the first 128 bits of a hash digest."""
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def read_dataset(path: Path, *, pixels: bool = True, complete: bool = False) -> Dataset:
    """Read a DICOM file with pydicom, keeping its warnings and log records off the console.

    Args:
        path: The file.
        pixels: Read the pixel data too (False stops before it: headers only).
        complete: Refuse a file that ends early (pydicom reads many such files silently).

    Raises:
        NotDicomError: If the file has no DICM preamble or no valid file meta.
        DicomError: If the file is unreadable, damaged or (with ``complete``) truncated.
    """
    try:
        with path.open("rb") as handle:
            preamble = handle.read(132)
    except OSError as error:
        raise DicomError(f"unreadable file ({error.strerror or error})", path) from None
    if len(preamble) < 132 or preamble[128:132] != b"DICM":
        raise NotDicomError("not DICOM (no DICM preamble)", path)
    try:
        with quiet_pydicom() as caught:
            ds = pydicom.dcmread(path, stop_before_pixels=not pixels, force=False)
    except InvalidDicomError:
        raise NotDicomError("not DICOM (invalid file meta)", path) from None
    except Exception as error:  # pydicom raises many kinds of error on damaged files
        what = "DICOM" if pixels else "DICOM header"
        raise DicomError(f"unreadable {what} ({error_text(error)})", path) from None
    if complete:
        if any("end of file" in str(w.message).lower() for w in caught):
            raise DicomError("truncated DICOM file (ends before a closing delimiter)", path)
        check_complete(ds, path)
    return ds


def check_complete(ds: Dataset, path: Path) -> None:
    """Refuse a dataset whose file ended early: empty, an element cut short, or lost pixels.

    Raises:
        DicomError: Naming the file and where it was cut.
    """
    if len(ds) == 0:
        raise DicomError("truncated DICOM file (no data set after the file meta)", path)
    _check_elements_whole(ds, path)
    if _must_hold_pixels(ds) and not any(k in ds for k in PIXEL_KEYWORDS):
        raise DicomError("truncated DICOM file (image without pixel data)", path)


def _check_elements_whole(ds: Dataset, path: Path) -> None:
    """Refuse an element of defined length that holds fewer bytes than it says (file cut)."""
    for tag in list(ds.keys()):  # keys, not elements: keep them raw
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.length == _UNDEFINED_LENGTH:
            continue
        if raw.value is not None and len(raw.value) < raw.length:
            raise DicomError(f"truncated DICOM file (ends inside element {tag})", path)


def _must_hold_pixels(ds: Dataset) -> bool:
    """True for objects that must carry pixel data: images and segmentations."""
    sop_class = sop_class_uid(ds)
    if "Rows" in ds:
        return True
    return sop_class not in ("", DICOMDIR_SOP_CLASS) and is_image_object("", sop_class)


def read_header(path: Path) -> DicomHeader:
    """Read one file's header (no pixel data) as a :class:`DicomHeader`.

    Where the fast path reads it, the frames also note where the pixel data lies
    (:class:`~medverse.io.dicom.layout.PixelLayout`), so decoding needs no second parse.

    Raises:
        NotDicomError: If the file is not DICOM.
        DicomError: If the header is unreadable, damaged or cut short.
    """
    fast = _fast_header(path)
    if fast is not None:
        return header_of(fast[0].dataset, path, layout=fast[1])
    ds = read_dataset(path, pixels=False)
    _check_elements_whole(ds, path)
    return header_of(ds, path)


def _fast_header(path: Path) -> tuple[FastHeader, PixelLayout | None] | None:
    """The needed elements straight from the bytes, and the pixel layout; None: use pydicom.

    Raises:
        DicomError: If the file is cut inside an element.
    """
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            if len(data) < 132 or data[128:132] != b"DICM":
                return None  # pydicom's path names what is wrong
            fast = read_fast_header(path, data)
            return None if fast is None else (fast, _layout(fast, data))
    except (OSError, ValueError, struct.error):  # empty file, unmappable, odd bytes
        return None


def _layout(fast: FastHeader, data: mmap.mmap) -> PixelLayout | None:
    try:
        with quiet_pydicom():
            return layout_of(fast, data)
    # Only a shortcut for the pixel read: on odd values the file is decoded the full way.
    except Exception:
        return None


def header_of(ds: Dataset, path: Path, *, layout: PixelLayout | None = None) -> DicomHeader:
    """Summarise a dataset already read (every value is converted here).

    Args:
        ds: The dataset (header elements at least).
        path: The file, named in errors.
        layout: Where the file's pixel data lies, noted on each frame.

    Raises:
        DicomError: If a value is malformed (pydicom converts lazily, so damage shows here).
    """
    try:
        with quiet_pydicom():  # conversion warnings can quote values (patient data)
            return _summarise(ds, path, layout)
    except DicomError:
        raise
    except Exception as error:  # a damaged element surfaces only when it is converted
        raise DicomError(f"unreadable DICOM header ({error_text(error)})", path) from None


def study_and_series_uids(ds: Dataset) -> tuple[str, str]:
    """The dataset's Study and Series Instance UIDs, or their :func:`stand_in_uid` when empty."""
    study = text_value(ds, "StudyInstanceUID")
    series = text_value(ds, "SeriesInstanceUID")
    if study and series:
        return study, series
    # every file of such a series repeats the same identifying bytes: convert them once
    key = _identity_bytes(ds)
    known = _STAND_INS.get((study, series, key)) if key is not None else None
    if known is not None:
        return known
    study_uid = study or stand_in_uid("study", (text_value(ds, k) for k in STUDY_IDENTITY))
    series_uid = series or stand_in_uid(
        "series", [study_uid, *(text_value(ds, k) for k in SERIES_IDENTITY)]
    )
    if key is not None:
        if len(_STAND_INS) >= 1024:
            _STAND_INS.clear()
        _STAND_INS[(study, series, key)] = (study_uid, series_uid)
    return study_uid, series_uid


_STAND_INS: dict[tuple[str, str, tuple[object, ...]], tuple[str, str]] = {}
"""Stand-in UIDs by the raw bytes they were made from (the same bytes give the same UIDs)."""


def _identity_bytes(ds: Dataset) -> tuple[object, ...] | None:
    """The raw VR and bytes of the identifying elements (None where one is already converted)."""
    key: list[object] = []
    for keyword in ("SpecificCharacterSet", *STUDY_IDENTITY, *SERIES_IDENTITY):
        if keyword not in ds:
            key.append(None)
            continue
        raw = ds.get_item(keyword)
        if not isinstance(raw, RawDataElement):
            return None
        key.append((raw.VR, raw.value, raw.is_little_endian))
    return tuple(key)


def _summarise(ds: Dataset, path: Path, layout: PixelLayout | None) -> DicomHeader:
    study_uid, series_uid = study_and_series_uids(ds)
    sop_class = sop_class_uid(ds)
    modality = text_value(ds, "Modality")
    frames: list[Frame] = []
    frame_error = None
    if is_image_object(modality, sop_class) and "Rows" in ds and "Columns" in ds:
        try:
            frames = frames_from_header(ds, path)
            if count := mosaic_count(ds, path):
                frames = mosaic_frames(ds, frames[0], count, path)
            if layout is not None:
                frames = [replace(frame, layout=layout) for frame in frames]
        except DicomError as error:
            frame_error = error.one_line()
    return DicomHeader(
        path=path,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance_uid(ds),
        study_instance_uid=text_value(ds, "StudyInstanceUID"),
        series_instance_uid=text_value(ds, "SeriesInstanceUID"),
        study_uid=study_uid,
        series_uid=series_uid,
        frame_of_reference_uid=text_value(ds, "FrameOfReferenceUID"),
        modality=modality,
        series_description=text_value(ds, "SeriesDescription"),
        series_number=text_value(ds, "SeriesNumber"),
        rows=int_value(ds, "Rows", 0),
        columns=int_value(ds, "Columns", 0),
        number_of_frames=int_value(ds, "NumberOfFrames", 1),
        identity_removed=text_value(ds, "PatientIdentityRemoved").upper() == "YES",
        referenced_series_uid=_referenced_series(ds),
        frames=tuple(frames),
        frame_error=frame_error,
    )


def _referenced_series(ds: Dataset) -> str:
    references = element_value(ds, "ReferencedSeriesSequence") or []
    return text_value(references[0], "SeriesInstanceUID") if references else ""


def text_value(ds: Dataset, keyword: str) -> str:
    """An attribute as stripped text ("" when absent or empty)."""
    text = ascii_values(ds, keyword)
    if text is not None and len(text) <= 1:
        return text[0] if text else ""
    return str(element_value(ds, keyword) or "").strip()


def sop_class_uid(ds: Dataset) -> str:
    """Return the dataset's SOPClassUID, or the file meta MediaStorageSOPClassUID if empty."""
    uid = text_value(ds, "SOPClassUID")
    if not uid and getattr(ds, "file_meta", None) is not None:
        uid = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "").strip()
    return uid
