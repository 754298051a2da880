"""DICOM input: scan folders, read headers, decode pixels and read a series as a Volume."""

from __future__ import annotations

from medverse.io.dicom.scan import FolderScan, SeriesInfo, SkippedFile, describe_folder, scan_folder
from medverse.io.dicom.series import convert_to_nifti, read_image, read_series, select_series

__all__ = [
    "FolderScan",
    "SeriesInfo",
    "SkippedFile",
    "convert_to_nifti",
    "describe_folder",
    "read_image",
    "read_series",
    "scan_folder",
    "select_series",
]
