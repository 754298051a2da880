"""Core types, settings, errors and the pure-data registry; imports no torch."""

from __future__ import annotations

from medverse.core.errors import (
    DicomError,
    InputError,
    MedverseError,
    ModelError,
    NiftiError,
    SeriesSelectionError,
)
from medverse.core.volume import LabelMap, Volume

__all__ = [
    "DicomError",
    "InputError",
    "LabelMap",
    "MedverseError",
    "ModelError",
    "NiftiError",
    "SeriesSelectionError",
    "Volume",
]
