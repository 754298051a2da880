"""SNOMED CT coding of SEG segments: the structure and, separately, its spatial modifier.

Codes come from pydicom's copy of the DICOM content mapping resource (``codes.SCT``), a
maintained terminology; nothing here is typed by hand. A label named only by a qualifier
("Anterior", "Posterior", as in the hippocampus label map) takes its structure from the
registry's label map whose names it matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from medverse.core.registry import TASKS, label_map

__all__ = ["SegmentCodes", "segment_codes", "structure_of"]

# Spatial qualifiers that modify a structure (SNOMED CT qualifier values), not structures.
_MODIFIERS = ("Anterior", "Posterior", "Left", "Right", "Superior", "Inferior", "Medial", "Lateral")


@dataclass(frozen=True)
class SegmentCodes:
    """How one segment is coded.

    Attributes:
        category: Segmented Property Category (e.g. SCT "Anatomical Structure").
        kind: Segmented Property Type (e.g. SCT "Hippocampus").
        modifier: Segmented Property Type Modifier (e.g. SCT "Anterior"), or None.
    """

    category: Code
    kind: Code
    modifier: Code | None = None


def structure_of(labels: Mapping[int, str]) -> str:
    """The registry label map whose value -> name pairs are exactly ``labels`` ("" if none)."""
    wanted = {int(v): str(n) for v, n in labels.items() if int(v) != 0}
    for name in dict.fromkeys(task.label_map for task in TASKS.values()):
        if {v: info.name for v, info in label_map(name).items()} == wanted:
            return name
    return ""


def segment_codes(name: str, structure: str = "") -> SegmentCodes:
    """SNOMED CT codes for a label called ``name`` (in a label map of ``structure``).

    Args:
        name: The label's name, e.g. "liver", "kidney_left" or "Anterior".
        structure: What the label map as a whole segments (e.g. "hippocampus"); used when
            ``name`` alone is only a qualifier.

    Returns:
        The category, type and modifier; "Tissue"/"Organ" when no code is known.
    """
    words = [w.capitalize() for w in name.replace("-", "_").replace(" ", "_").split("_") if w]
    modifiers = [w for w in words if w in _MODIFIERS]
    rest = [w for w in words if w not in _MODIFIERS]
    if not rest and structure:
        rest = [w.capitalize() for w in structure.replace("-", "_").split("_") if w]
    modifier = _sct(modifiers[0]) if len(modifiers) == 1 else None
    for candidate in ("".join(rest), "".join(words), rest[0] if rest else ""):
        kind = _sct(candidate)
        if kind is not None and candidate not in _MODIFIERS:
            chosen = modifier if candidate != "".join(words) else None
            return SegmentCodes(codes.SCT.AnatomicalStructure, kind, chosen)
    return SegmentCodes(codes.SCT.Tissue, codes.SCT.Organ, None)


def _sct(keyword: str) -> Code | None:
    code = getattr(codes.SCT, keyword, None) if keyword else None
    return code if isinstance(code, Code) else None
