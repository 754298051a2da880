"""De-identification of DICOM folders (PS3.15 Annex E): folder run, per-dataset rules, mapping."""

from __future__ import annotations

from medverse.io.deid.folder import DeidSummary, deidentify

__all__ = ["DeidSummary", "deidentify"]
