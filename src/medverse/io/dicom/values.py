"""Plain-ASCII attribute values (UIDs, codes, numbers as text) read without pydicom's conversion.

A scan reads a few dozen values from every file; pydicom's lazy conversion (hooks, character
sets, value objects) costs tens of microseconds each. Values whose VR is ASCII by definition
(AE, AS, CS, DA, DS, DT, IS, TM, UI) are decoded here straight from the raw bytes when the
element is still raw; anything else (names, descriptions, converted elements, binary VRs) goes
through pydicom as before, so every caller gets the value pydicom would give.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})


def ascii_values(ds: Dataset, keyword: str) -> list[str] | None:
    """The values of an ASCII-VR element still raw in ``ds``, stripped; None otherwise.

    None means "ask pydicom" (absent, already converted, or not an ASCII VR).
    """
    raw = _raw(ds, keyword)
    if raw is None:
        return None
    vr = raw.VR or dictionary_VR(raw.tag)
    if vr not in ASCII_VRS:
        return None
    if not raw.value:
        return []
    text = raw.value.decode("ascii", errors="replace").strip(" \x00")
    return [part.strip(" \x00") for part in text.split("\\")] if text else []


@functools.cache
def _tag(keyword: str) -> BaseTag | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else BaseTag(tag)


def _raw(ds: Dataset, keyword: str) -> RawDataElement | None:
    """The element ``keyword`` if it is still raw in ``ds``, else None.

    Read from pydicom's element store directly: ``tag in ds`` and ``ds.get_item`` turn the key
    into a ``Tag`` first (about a microsecond each), a large share of a folder scan.
    """
    tag = _tag(keyword)
    if tag is None:
        return None
    raw = ds._dict.get(tag)
    return raw if isinstance(raw, RawDataElement) else None


def element_value(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)`` (pydicom's converted value, None when absent), found by tag.

    Functional-group look-ups ask many items for elements they lack: ``Dataset.get`` finds
    those through attribute look-up and a caught ``AttributeError``, this by one dict look-up.
    """
    tag = _tag(keyword)
    if tag is None or tag not in ds._dict:
        return None
    return ds[tag].value


_BINARY_INTS = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i"}


def int_value(ds: Dataset, keyword: str, default: int) -> int:
    """A single integer attribute (US/SS/UL/SL or IS), ``default`` when absent or empty.

    Raw little-endian binary and ASCII values are read here; others go through pydicom.
    """
    raw = _raw(ds, keyword)
    if raw is not None and raw.is_little_endian:
        vr = raw.VR or dictionary_VR(raw.tag)
        form = _BINARY_INTS.get(vr)
        if form is not None and raw.value is not None and len(raw.value) == struct.calcsize(form):
            return int(struct.unpack(form, raw.value)[0]) or default
        text = ascii_values(ds, keyword)
        if text is not None and len(text) <= 1:
            try:
                return int(text[0]) or default if text else default
            except ValueError:
                pass  # pydicom's conversion below names the problem as it always did
    elif keyword not in ds:
        return default
    return int(ds.get(keyword, default) or default)
