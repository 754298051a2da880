"""De-identify one pydicom Dataset in memory: walk every element, sequences included."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from medverse.io.deid.mapping import DeidMapping, PatientEntry
from medverse.io.deid.profile import Action, action_for, dummy_value
from medverse.io.dicom.header import study_and_series_uids

DEID_METHOD = "medverse: PS3.15 Basic Profile, Modified Dates"
# (code value, meaning) of CID 7050 De-identification Method.
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
_META_DROPPED = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "PrivateInformationCreatorUID",
    "PrivateInformation",
)


def patient_key(ds: Dataset) -> str:
    """The original identity a pseudonym stands for: PatientID, else name, else "unknown"."""
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        return f"id:{patient_id}"
    name = str(ds.get("PatientName", "") or "").strip()
    return f"name:{name}" if name else "unknown"


def deidentify_dataset(
    ds: Dataset, mapping: DeidMapping, *, keep_descriptions: bool = False
) -> PatientEntry:
    """De-identify ``ds`` in place and return the patient entry that was used.

    An empty dataset SOPInstanceUID/SOPClassUID is first filled from the file meta (as readers
    already do), so the written file is consistent. Pixel data is never touched.

    Args:
        ds: A dataset read with pydicom (file meta included when it came from a file).
        mapping: Pseudonyms, date offsets and UID map; extended as needed.
        keep_descriptions: Keep study/series descriptions and protocol name.
    """
    _repair_instance_uids(ds)
    entry = mapping.patient(patient_key(ds))
    _clean(ds, entry, mapping, keep_descriptions)
    _clean_file_meta(ds, mapping)
    _mark(ds)
    return entry


def _repair_instance_uids(ds: Dataset) -> None:
    # Type 1 UIDs a file leaves empty get the one stand-in rule (then mapped like any UID),
    # so the de-identified copy is valid and its series stays one series.
    study_uid, series_uid = study_and_series_uids(ds)
    if not str(ds.get("StudyInstanceUID", "") or ""):
        ds.StudyInstanceUID = study_uid
    if not str(ds.get("SeriesInstanceUID", "") or ""):
        ds.SeriesInstanceUID = series_uid
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for keyword, meta_keyword in (
        ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
        ("SOPClassUID", "MediaStorageSOPClassUID"),
    ):
        if not str(ds.get(keyword, "") or "") and meta.get(meta_keyword):
            setattr(ds, keyword, meta.get(meta_keyword))


def _clean(ds: Dataset, entry: PatientEntry, mapping: DeidMapping, keep: bool) -> None:
    for tag in list(ds.keys()):
        if tag.is_private:
            del ds[tag]
            continue
        element = ds[tag]
        action = action_for(int(tag), element.VR, keep_descriptions=keep)
        if action is Action.REMOVE:
            del ds[tag]
        elif action is Action.RECURSE:
            for item in element.value or []:
                _clean(item, entry, mapping, keep)
        elif action is not Action.KEEP:
            _apply(ds, element, action, entry, mapping)


def _apply(
    ds: Dataset, element: DataElement, action: Action, entry: PatientEntry, mapping: DeidMapping
) -> None:
    if action is Action.EMPTY:
        element.value = Sequence([]) if element.VR == "SQ" else None
    elif action is Action.PSEUDONYM:
        element.value = entry.pseudonym
    elif action is Action.UID:
        element.value = _map_values(element.value, mapping.uid)
    elif action is Action.SHIFT:
        days = entry.date_offset_days
        shift = shift_date if element.VR == "DA" else shift_datetime
        element.value = _map_values(element.value, lambda v: shift(v, days))
    elif action is Action.DUMMY:
        dummy = dummy_value(element.VR)
        if dummy is None:
            del ds[element.tag]
        else:
            element.value = dummy


def _map_values(value: object, func: Callable[[str], str]) -> object:
    if value is None or value == "":
        return value
    if isinstance(value, MultiValue | list | tuple):
        return [func(str(v)) for v in value]
    return func(str(value))


def shift_date(value: str, days: int) -> str:
    """Shift a DA value (``YYYYMMDD``) by ``days``; an unparseable date becomes empty."""
    text = value.strip()
    try:
        day = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    if len(text) != 8:
        return ""
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str:
    """Shift the date part of a DT value by ``days``, keeping time, fraction and UTC offset.

    A DT of only ``YYYY`` or ``YYYYMM`` is shifted from the middle of that period and kept at
    the same precision; an unparseable value becomes empty.
    """
    text = value.strip()
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits >= 8:
        shifted = shift_date(text[:8], days)
        return shifted + text[8:] if shifted else ""
    if digits in (4, 6):
        middle = text[:4] + (text[4:6] if digits == 6 else "07") + "15"
        shifted = shift_date(middle, days)
        return shifted[:digits] + text[digits:] if shifted else ""
    return ""


def _clean_file_meta(ds: Dataset, mapping: DeidMapping) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for keyword in _META_DROPPED:
        if keyword in meta:
            delattr(meta, keyword)
    if meta.get("MediaStorageSOPInstanceUID"):
        meta.MediaStorageSOPInstanceUID = mapping.uid(str(meta.MediaStorageSOPInstanceUID))
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MEDVERSE"


def _mark(ds: Dataset) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEID_METHOD
    ds.DeidentificationMethodCodeSequence = Sequence(list(_method_items(METHOD_CODES)))
    ds.LongitudinalTemporalInformationModified = "MODIFIED"


def _method_items(codes: Iterable[tuple[str, str]]) -> Iterable[Dataset]:
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        yield item
