"""Per-frame dimension values (time, echo, b-value...) that tell the volumes of a series apart."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medverse.io.dicom.values import ascii_values, element_value

DIMENSION_ATTRIBUTES = (
    "TemporalPositionIndex",
    "TemporalPositionIdentifier",
    "EchoNumbers",
    "EffectiveEchoTime",
    "EchoTime",
    "DiffusionBValue",
    "DiffusionGradientOrientation",
    "TriggerTime",
    "NominalCardiacTriggerDelayTime",
    "AcquisitionNumber",
    "FrameAcquisitionDateTime",
    "AcquisitionTime",
)
"""Tried in this order; the first that splits the frames into whole volumes is used."""

# Where an enhanced multi-frame image keeps each attribute: functional group sequence, then
# the nested sequence inside its item (PS3.3 C.7.6.16 and the MR/CT functional group macros).
_ENHANCED_PLACES: dict[str, tuple[str, ...]] = {
    "TemporalPositionIndex": ("FrameContentSequence",),
    "FrameAcquisitionDateTime": ("FrameContentSequence",),
    "EffectiveEchoTime": ("MREchoSequence",),
    "DiffusionBValue": ("MRDiffusionSequence",),
    "DiffusionGradientOrientation": (
        "MRDiffusionSequence",
        "DiffusionGradientDirectionSequence",
    ),
    "NominalCardiacTriggerDelayTime": ("CardiacSynchronizationSequence",),
}
# Legacy Converted Enhanced images keep the classic attributes that vary per frame here.
_CONVERTED = (
    "UnassignedPerFrameConvertedAttributesSequence",
    "UnassignedSharedConvertedAttributesSequence",
)


def classic_dimensions(ds: Dataset) -> tuple[str, ...]:
    """The dimension values of a classic single-frame image (top-level attributes), as text."""
    return tuple(_classic_text(ds, keyword) for keyword in DIMENSION_ATTRIBUTES)


def _classic_text(ds: Dataset, keyword: str) -> str:
    text = ascii_values(ds, keyword)
    return "\\".join(text) if text is not None else _text(element_value(ds, keyword))


def enhanced_dimensions(ds: Dataset, per_frame: Dataset, shared: Dataset) -> tuple[str, ...]:
    """The dimension values of one frame of an enhanced multi-frame image, as text.

    Args:
        ds: The whole dataset (top-level attributes are the last resort).
        per_frame: The frame's item of PerFrameFunctionalGroupsSequence.
        shared: The item of SharedFunctionalGroupsSequence (empty when absent).
    """
    return tuple(_text(_lookup(ds, per_frame, shared, k)) for k in DIMENSION_ATTRIBUTES)


def _lookup(ds: Dataset, per_frame: Dataset, shared: Dataset, keyword: str) -> Any:
    for group in (per_frame, shared):
        value = _nested(group, _ENHANCED_PLACES.get(keyword, ()), keyword)
        if value is None:
            for sequence in _CONVERTED:
                value = _nested(group, (sequence,), keyword)
                if value is not None:
                    break
        if value is not None:
            return value
    return element_value(ds, keyword)


def _nested(item: Dataset, path: tuple[str, ...], keyword: str) -> Any:
    """``item``'s first items down ``path``, then ``keyword``; None when any step is absent."""
    if not path:
        return None
    for sequence in path:
        items = element_value(item, sequence)
        if not items:
            return None
        item = items[0]
    return element_value(item, keyword)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(_text(v) for v in value)
    return str(value).strip()
