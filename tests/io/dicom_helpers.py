"""Helpers for DICOM tests: copy real series into tmp folders and damage or edit the copies."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.conftest import SHARED_DATA

HIPPO_CROP = SHARED_DATA / "dicom_mr_study_brain" / "11_HCropVolume"
T1POST = SHARED_DATA / "dicom_mr_study_brain" / "11-T1post-18670"
CT_3SLICE = SHARED_DATA / "dicom_seg_sr_dcmqi" / "ct_3slice"


def copy_files(files: Iterable[Path], dst: Path) -> list[Path]:
    """Copy files into ``dst`` (created) and return the copies, in the given order."""
    dst.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(f, dst / f.name)) for f in files]


def copy_series(folder: Path, dst: Path) -> list[Path]:
    """Copy every file of a one-series folder into ``dst``, sorted by name."""
    return copy_files(sorted(p for p in folder.iterdir() if p.is_file()), dst)


def edit_header(path: Path, **values: Any) -> None:
    """Rewrite a DICOM file with some top-level attributes changed."""
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def truncate(path: Path, keep: int | float) -> None:
    """Cut a file to ``keep`` bytes (int) or to that fraction of its size (float)."""
    data = path.read_bytes()
    size = keep if isinstance(keep, int) else int(len(data) * keep)
    path.write_bytes(data[:size])


def hippo_slice(number: int) -> Path:
    """The HippoCrop file of a slice number (1..40, z = number mm)."""
    return HIPPO_CROP / f"{number}.dcm"


VENDOR_SAMPLES = SHARED_DATA / "dicom_vendor_samples"
LABELMAP_SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
# The validator in Debian 12 (dicom3tools 1.00~20220618) predates Label Map Segmentation
# (DICOM 2024b, Sup 243): it knows neither that SOP class ("Information Object Not found") nor
# its background segment 0. Those two errors, and only on that class, are not ours.
_UNKNOWN_TO_VALIDATOR = ("Information Object Not found", "with SegmentNumber of 0")


def dciodvfy_errors(path: Path) -> list[str]:
    """The errors Debian's ``dciodvfy`` reports on ``path``, less those it cannot know."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy not installed (Debian dicom3tools: make system-deps)")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    if pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID == LABELMAP_SEG_CLASS:
        errors = [e for e in errors if not any(known in e for known in _UNKNOWN_TO_VALIDATOR)]
    return errors
