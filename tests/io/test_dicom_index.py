"""The DICOM folder index: reused when unchanged, re-read when changed, never in the folder.

Parallel reading gives the serial result.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medverse.io.dicom import index, scan
from medverse.io.dicom.scan import describe_folder
from tests.conftest import CT_SERIES
from tests.io.dicom_helpers import VENDOR_SAMPLES, copy_series, edit_header


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_second_scan_reads_no_header_and_the_folder_is_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _listing(CT_SERIES)
    first = describe_folder(CT_SERIES, index_dir=tmp_path / "index")
    assert len(list((tmp_path / "index").glob("*.pickle"))) == 1
    assert _listing(CT_SERIES) == before  # nothing written into the input folder

    def no_reading(path: Path) -> None:
        raise AssertionError(f"header of {path} read again")

    monkeypatch.setattr(scan, "read_header", no_reading)
    assert describe_folder(CT_SERIES, index_dir=tmp_path / "index") == first


def test_a_changed_file_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "RACY_NS", 0)  # the copies are new: index them anyway
    files = copy_series(VENDOR_SAMPLES / "ge_mprage_iop_jitter", tmp_path / "ge")
    where = tmp_path / "index"
    assert describe_folder(tmp_path / "ge", index_dir=where).series[0].description != "edited"
    edit_header(files[0], SeriesDescription="edited", SeriesInstanceUID="1.2.3.4")
    later = files[0].stat().st_mtime_ns + 5_000_000_000
    os.utime(files[0], ns=(later, later))
    series = describe_folder(tmp_path / "ge", index_dir=where).series
    assert sorted(s.description for s in series) == ["3D Ax T1 MP-RAGE_R22", "edited"]


def test_just_written_files_are_not_indexed(tmp_path: Path) -> None:
    copy_series(VENDOR_SAMPLES / "jpeg_lossless", tmp_path / "new")
    describe_folder(tmp_path / "new", index_dir=tmp_path / "index")
    (pickle_file,) = (tmp_path / "index").glob("*.pickle")
    assert index._load(pickle_file) == {}  # file times tick coarsely: re-read until settled


def test_parallel_reading_gives_the_serial_result() -> None:
    folder = VENDOR_SAMPLES / "ge_mprage_iop_jitter"
    files = sorted(folder.iterdir())
    serial = [scan._header_or_skip(f) for f in files]
    parallel = index.indexed_map(
        folder, files, scan._header_or_skip, index_dir=None, parallel_min=2
    )
    assert parallel == serial
