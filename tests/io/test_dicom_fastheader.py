"""The fast header and pixel path gives what pydicom's full parse gives, on every real file."""

from __future__ import annotations

import mmap
import warnings
from pathlib import Path

import numpy as np
import pytest

from medverse.core.errors import DicomError
from medverse.io.dicom.fastheader import read_fast_header
from medverse.io.dicom.header import PIXEL_KEYWORDS, header_of, read_dataset, read_header
from medverse.io.dicom.layout import native_pixels
from medverse.io.quiet import quiet_pydicom
from tests.conftest import CT_SERIES, DCMQI, MR_STUDY
from tests.io.dicom_helpers import VENDOR_SAMPLES, copy_files, truncate

FOLDERS = [*sorted(p for p in VENDOR_SAMPLES.iterdir() if p.is_dir()), CT_SERIES, MR_STUDY, DCMQI]


def _dicom_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.stat().st_size > 132:
            with path.open("rb") as handle:
                if handle.read(132)[128:] == b"DICM":
                    files.append(path)
    return files


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_fast_header_summarises_like_the_full_parse(folder: Path) -> None:
    """The byte walk and raw ASCII values give what pydicom's parse and conversion give."""
    files = _dicom_files(folder)
    assert files
    for path in files:
        dataset = read_dataset(path, pixels=False)
        with quiet_pydicom():  # every element converted by pydicom, nothing left raw
            for _ in dataset.iterall():
                pass
        fast, full = read_header(path), header_of(dataset, path)
        assert fast == full
        assert [f.dimensions for f in fast.frames] == [f.dimensions for f in full.frames]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_native_pixels_equal_pydicom(folder: Path) -> None:
    for path in _dicom_files(folder):
        ds = read_dataset(path)
        if not any(k in ds for k in PIXEL_KEYWORDS):
            continue
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
            ours = native_pixels(path, m)
        if ours is None:  # compressed, or not plain greyscale: pydicom decodes it
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = ds.pixel_array
        reference = reference[np.newaxis] if reference.ndim == 2 else reference
        assert ours.dtype == reference.dtype and np.array_equal(ours, reference)


@pytest.mark.parametrize("sample", ["philips_fmri_4d", "siemens_xa_enhanced_3d"])
def test_classic_and_enhanced_files_take_the_fast_path(sample: str) -> None:
    path = _dicom_files(VENDOR_SAMPLES / sample)[0]
    fast = read_fast_header(path, path.read_bytes())
    assert fast is not None and fast.pixel_offset > 0


def test_a_file_cut_inside_a_skipped_element_is_named(tmp_path: Path) -> None:
    (path,) = copy_files(_dicom_files(VENDOR_SAMPLES / "ge_mprage_iop_jitter")[:1], tmp_path)
    truncate(path, 1000)  # inside the GE private element (0009,1027), which the scan skips
    with pytest.raises(
        DicomError, match=r"truncated DICOM file \(ends inside element \(0009,1027\)\)"
    ):
        read_header(path)


def test_a_philips_file_cut_in_its_private_groups_is_named(tmp_path: Path) -> None:
    """The walk jumps over private groups past 0029 only to a Pixel Data element that fits."""
    (path,) = copy_files(_dicom_files(VENDOR_SAMPLES / "philips_fmri_4d")[:1], tmp_path)
    fast = read_fast_header(path, path.read_bytes())
    assert fast is not None
    truncate(path, fast.pixel_offset - 2000)  # inside Philips group 2001/2005 elements
    with pytest.raises(DicomError, match=r"truncated DICOM file \(ends inside element"):
        read_header(path)
