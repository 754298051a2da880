"""Fast header path: read only the top-level elements a scan needs, straight from the bytes.

pydicom turns every element of a file (private sequences included, often ~1,000 per slice)
into Python objects; a folder scan needs about 50 of them. Here the file is walked once with
:mod:`struct`, elements not needed are skipped by their length (sequences of undefined length
item by item), the needed ones are kept as pydicom ``RawDataElement``s, and the result is a
pydicom ``Dataset`` that :func:`medverse.io.dicom.header.header_of` summarises like any
other: one summariser, two ways in. Where the shape of the file is not the common one
(big endian, deflated, a needed sequence such as the enhanced functional groups), the caller
falls back to pydicom by getting None.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from medverse.core.errors import DicomError
from medverse.io.dicom.dimensions import DIMENSION_ATTRIBUTES


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"unknown DICOM keyword {keyword}")
    return tag


_KEYWORDS = [
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyDate",
    "SeriesDate",
    "StudyTime",
    "SeriesTime",
    "AccessionNumber",
    "Modality",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "PatientIdentityRemoved",
    "SliceThickness",
    "SpacingBetweenSlices",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "StudyID",
    "SeriesNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "FrameOfReferenceUID",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "PixelSpacing",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleIntercept",
    "RescaleSlope",
    "GridFrameOffsetVector",
]
WANTED = frozenset(_tag(k) for k in (*_KEYWORDS, *DIMENSION_ATTRIBUTES))
"""Top-level tags kept (plus the Siemens private groups 0019 and 0029, for mosaics)."""
_PRIVATE_GROUPS = (0x0019, 0x0029)
_FALLBACK = frozenset({_tag("DirectoryRecordSequence")})
_FUNCTIONAL_GROUPS = frozenset(
    _tag(k)
    for k in (
        "PlanePositionSequence",
        "PlaneOrientationSequence",
        "PixelMeasuresSequence",
        "PixelValueTransformationSequence",
        "FrameContentSequence",
        "MREchoSequence",
        "MRDiffusionSequence",
        "CardiacSynchronizationSequence",
        "UnassignedPerFrameConvertedAttributesSequence",
        "UnassignedSharedConvertedAttributesSequence",
    )
)
# Sequences kept, each with the tags kept inside its items (None: all of them). The
# functional groups keep the geometry and dimension macros and skip the rest (derivation
# references, private groups), which is most of an enhanced file's header.
_SEQUENCES: dict[int, frozenset[int] | None] = {
    _tag("ReferencedSeriesSequence"): None,
    _tag("PerFrameFunctionalGroupsSequence"): _FUNCTIONAL_GROUPS,
    _tag("SharedFunctionalGroupsSequence"): _FUNCTIONAL_GROUPS,
}
_KNOWN_SEQUENCES = frozenset(_SEQUENCES) | _FUNCTIONAL_GROUPS
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN"})
_LONG_VRS |= frozenset({b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_DELIMITERS = frozenset({_ITEM_END, _SEQUENCE_END})
_PIXEL_DATA_BYTES = b"\xe0\x7f\x10\x00"
_PIXEL_SIZE_TAGS = tuple(_tag(k) for k in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated"))
_NUMBER_OF_FRAMES = _tag("NumberOfFrames")
_CLASSIC_LAST = 0x0029FFFF
"""The last tag a single-frame image needs (Siemens private group 0029, for mosaics)."""
_HEAD = struct.Struct("<HH2sH").unpack_from
"""An explicit VR element header: group, element, VR, 16-bit length."""
_ITEM_HEAD = struct.Struct("<HHI").unpack_from
"""An item, delimiter or implicit VR element header: group, element, 32-bit length."""
_U32 = struct.Struct("<I").unpack_from
_VR_TEXT: dict[bytes, str] = {}
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
NATIVE_SYNTAXES = frozenset({_EXPLICIT_LE, _IMPLICIT_LE})
ENCAPSULATED_PREFIXES = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5")


@dataclass(frozen=True)
class FastHeader:
    """A file's needed elements as a pydicom Dataset, and where its pixel data starts.

    Attributes:
        dataset: The kept top-level elements (raw, converted lazily), with ``file_meta``.
        pixel_offset: Byte offset of the pixel data element's header (-1 when absent).
        syntax: The TransferSyntaxUID.
    """

    dataset: Dataset
    pixel_offset: int
    syntax: str = ""


class _NeedsPydicomError(Exception):
    """The file needs the full pydicom reader."""


def read_fast_header(
    path: Path, data: bytes | mmap.mmap, *, pixels_only: bool = False
) -> FastHeader | None:
    """Parse the needed top-level elements of a DICOM file's bytes.

    Args:
        path: The file, named in errors.
        data: Its bytes (preamble and ``DICM`` already checked by the caller).
        pixels_only: Skip the sequences (only the pixel description and offset are wanted).

    Returns:
        The header, or None when the file needs pydicom (unusual encoding, a needed sequence).

    Raises:
        DicomError: If an element runs past the end of the file (truncated).
    """
    try:
        meta, pos = _walk(data, 132, explicit=True, path=path, meta_only=True)
        syntax = _text(meta.get(0x00020010))
        if syntax in NATIVE_SYNTAXES:
            explicit = syntax == _EXPLICIT_LE
        elif syntax.startswith(ENCAPSULATED_PREFIXES):
            explicit = True
        else:
            return None
        elements, pixel_offset = _walk(
            data, pos, explicit=explicit, path=path, pixels_only=pixels_only
        )
    except _NeedsPydicomError:
        return None
    file_meta = FileMetaDataset()
    for tag, raw in meta.items():
        file_meta[BaseTag(tag)] = raw
    ds = Dataset({BaseTag(tag): raw for tag, raw in elements.items()})
    ds.file_meta = file_meta
    ds.set_original_encoding(not explicit, True, _text(elements.get(0x00080005)) or None)
    return FastHeader(ds, pixel_offset, syntax)


def _walk(
    data: bytes | mmap.mmap,
    pos: int,
    *,
    explicit: bool,
    path: Path,
    meta_only: bool = False,
    pixels_only: bool = False,
) -> tuple[dict[int, RawDataElement | DataElement], int]:
    """Top-level elements from ``pos``: (kept elements, pixel data offset or the end)."""
    kept: dict[int, RawDataElement | DataElement] = {}
    end = len(data)
    sequences = not meta_only and not pixels_only
    while pos + 8 <= end:
        # the hot loop of a scan (hundreds of elements a file): one unpack per element header
        group, element, vr_bytes, length = _HEAD(data, pos)
        tag = group << 16 | element
        if meta_only and group != 0x0002:
            return kept, pos
        if tag in _PIXEL_TAGS:
            return kept, pos
        if tag > _CLASSIC_LAST and not meta_only and _NUMBER_OF_FRAMES not in kept:
            # a single-frame image needs nothing past the private groups 0029: jump to its
            # uncompressed pixel data (often hundreds of private elements on), else walk on
            pixel_offset = _pixel_data_at_end(data, kept, explicit)
            if pixel_offset > 0:
                return kept, pixel_offset
        start = pos
        if explicit or group == 0x0002:
            vr = _vr(vr_bytes)
            if vr_bytes in _LONG_VRS:
                length = _U32(data, pos + 8)[0]
                pos += 12
            else:
                pos += 8
        else:
            vr, length, pos = None, _U32(data, pos + 4)[0], pos + 8
        if tag in _FALLBACK:
            raise _NeedsPydicomError
        if sequences and tag in _SEQUENCES:
            keep = _SEQUENCES[tag]
            items, pos = _sequence(data, pos, length, explicit and vr != "UN", path, tag, keep)
            kept[tag] = DataElement(BaseTag(tag), "SQ", items)
            continue
        if length == _UNDEFINED:  # UN of undefined length: a sequence in implicit VR
            pos = _skip_undefined(data, pos, explicit and vr != "UN", path, tag)
            continue
        if pos + length > end:
            raise DicomError(f"truncated DICOM file (ends inside element {BaseTag(tag)})", path)
        if meta_only or tag in WANTED or (group in _PRIVATE_GROUPS and vr != "SQ"):
            value = bytes(data[pos : pos + length])
            implicit = not (explicit or group == 0x0002)
            kept[tag] = RawDataElement(BaseTag(tag), vr, length, value, start, implicit, True)
        pos += length
    return kept, (-1 if not meta_only else pos)


def _pixel_data_at_end(
    data: bytes | mmap.mmap, kept: dict[int, RawDataElement | DataElement], explicit: bool
) -> int:
    """Offset of an uncompressed Pixel Data element that ends the file, or -1.

    Its length follows from Rows, Columns, SamplesPerPixel and BitsAllocated, so its header
    can only be at one place (two with the odd-length pad byte); it counts only if the tag,
    VR and length stored there are exactly those. Compressed or padded files: -1 (walk on).
    """
    sizes = [_us(kept, tag) for tag in _PIXEL_SIZE_TAGS]
    rows, columns, samples, bits = sizes
    if not (rows and columns and bits) or bits % 8:
        return -1
    length = rows * columns * (samples or 1) * bits // 8
    for value_length in (length, length + 1):
        at = len(data) - value_length - (12 if explicit else 8)
        if at < 0 or data[at : at + 4] != _PIXEL_DATA_BYTES:
            continue
        if explicit and data[at + 4 : at + 12] in (
            b"OB\0\0" + struct.pack("<I", value_length),
            b"OW\0\0" + struct.pack("<I", value_length),
        ):
            return at
        if not explicit and _U32(data, at + 4)[0] == value_length:
            return at
    return -1


def _us(kept: dict[int, RawDataElement | DataElement], tag: int) -> int:
    """A raw US value (0 when absent or not two bytes)."""
    raw = kept.get(tag)
    if not isinstance(raw, RawDataElement) or raw.value is None or len(raw.value) != 2:
        return 0
    return int(struct.unpack("<H", raw.value)[0])


def _sequence(
    data: bytes | mmap.mmap,
    pos: int,
    length: int,
    explicit: bool,
    path: Path,
    tag: int,
    keep: frozenset[int] | None,
) -> tuple[Sequence, int]:
    """Parse a sequence's items, keeping the tags in ``keep`` (None: all); (items, end)."""
    end = len(data) if length == _UNDEFINED else pos + length
    if end > len(data):
        raise DicomError(f"truncated DICOM file (ends inside element {BaseTag(tag)})", path)
    items: list[Dataset] = []
    while pos + 8 <= end:
        group, element = struct.unpack_from("<HH", data, pos)
        item_length = struct.unpack_from("<I", data, pos + 4)[0]
        if (group << 16 | element) == _SEQUENCE_END:
            return Sequence(items), pos + 8
        if (group << 16 | element) != _ITEM:
            raise _NeedsPydicomError
        item_end = None if item_length == _UNDEFINED else pos + 8 + item_length
        item, pos = _item(data, pos + 8, item_end, explicit, path, tag, keep)
        items.append(item)
    if length == _UNDEFINED:
        raise DicomError(f"truncated DICOM file (ends inside element {BaseTag(tag)})", path)
    return Sequence(items), pos


def _item(
    data: bytes | mmap.mmap,
    pos: int,
    item_end: int | None,
    explicit: bool,
    path: Path,
    tag: int,
    keep: frozenset[int] | None,
) -> tuple[Dataset, int]:
    """One sequence item's kept elements (nested sequences kept whole); (item, end)."""
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    limit = len(data) if item_end is None else min(item_end, len(data))
    while pos + 8 <= limit:
        group, element = struct.unpack_from("<HH", data, pos)
        inner = group << 16 | element
        if inner == _ITEM_END:
            return Dataset(elements), pos + 8
        start = pos
        vr, length, pos = element_header(data, pos, explicit)
        wanted = keep is None or inner in keep
        is_sequence = (
            vr == "SQ" or length == _UNDEFINED or (vr is None and inner in _KNOWN_SEQUENCES)
        )
        if wanted and is_sequence:
            items, pos = _sequence(data, pos, length, explicit and vr != "UN", path, inner, None)
            elements[BaseTag(inner)] = DataElement(BaseTag(inner), "SQ", items)
            continue
        if length == _UNDEFINED:
            pos = _skip_undefined(data, pos, explicit and vr != "UN", path, inner)
            continue
        if pos + length > len(data):
            raise DicomError(f"truncated DICOM file (ends inside element {BaseTag(tag)})", path)
        if wanted:
            value = bytes(data[pos : pos + length])
            raw = RawDataElement(BaseTag(inner), vr, length, value, start, not explicit, True)
            elements[BaseTag(inner)] = raw
        pos += length
    if item_end is None:
        raise DicomError(f"truncated DICOM file (ends inside element {BaseTag(tag)})", path)
    return Dataset(elements), pos


def element_header(
    data: bytes | mmap.mmap, pos: int, explicit: bool
) -> tuple[str | None, int, int]:
    """(VR or None, value length, position of the value) of the element at ``pos``."""
    if not explicit:
        return None, _U32(data, pos + 4)[0], pos + 8
    _, _, vr, length = _HEAD(data, pos)
    if vr in _LONG_VRS:
        return _vr(vr), _U32(data, pos + 8)[0], pos + 12
    return _vr(vr), length, pos + 8


def _vr(vr: bytes) -> str:
    """The VR as text; implicit VR inside an explicit file raises (pydicom copes with that)."""
    text = _VR_TEXT.get(vr)
    if text is None:
        if not (b"AA" <= vr <= b"ZZ"):
            raise _NeedsPydicomError
        text = _VR_TEXT[vr] = vr.decode()
    return text


def _skip_undefined(data: bytes | mmap.mmap, pos: int, explicit: bool, path: Path, tag: int) -> int:
    """Skip a sequence (or item) of undefined length; return the position after it."""
    end = len(data)
    while pos + 8 <= end:
        group, element, length = _ITEM_HEAD(data, pos)
        item_tag = group << 16 | element
        if item_tag in _DELIMITERS:
            return pos + 8
        if item_tag == _ITEM:
            pos += 8
            if length == _UNDEFINED:
                pos = _skip_undefined(data, pos, explicit, path, tag)
            else:
                pos += length
            continue
        inner_explicit = explicit  # an element inside an item
        if explicit:
            vr_bytes = bytes(data[pos + 4 : pos + 6])
            inner_explicit = _vr(vr_bytes) != "UN"
            if vr_bytes in _LONG_VRS:
                length, pos = _U32(data, pos + 8)[0], pos + 12
            else:  # the 16-bit length is the upper half of what was read as 32 bits
                length, pos = length >> 16, pos + 8
        else:
            pos += 8
        if length == _UNDEFINED:
            pos = _skip_undefined(data, pos, inner_explicit, path, tag)
        else:
            pos += length
    raise DicomError(f"truncated DICOM file (ends inside element {BaseTag(tag)})", path)


def _text(raw: RawDataElement | DataElement | None) -> str:
    if not isinstance(raw, RawDataElement) or not raw.value:
        return ""
    return raw.value.decode("ascii", errors="replace").strip(" \x00")
