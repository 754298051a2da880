"""read_header on real files, and the one stand-in UID rule for series and studies without UIDs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medverse.core.errors import DicomError, NotDicomError
from medverse.io.dicom import read_series, scan_folder
from medverse.io.dicom.header import read_header, stand_in_uid
from tests.conftest import CT_SERIES, DCMQI, MR_STUDY, SHARED_DATA
from tests.io.dicom_helpers import CT_3SLICE, copy_series, edit_header

VENDOR = SHARED_DATA / "dicom_vendor_samples"
UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")  # PS3.5 9.1


def _valid_uid(uid: str) -> bool:
    return len(uid) <= 64 and UID.match(uid) is not None


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".md")


def test_ct_series_without_uids_gets_file_meta_classes_and_one_stand_in() -> None:
    headers = [read_header(f) for f in _dicom_files(CT_SERIES)]
    assert len(headers) == 20
    for header in headers:
        ds = pydicom.dcmread(header.path, stop_before_pixels=True)
        assert header.sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
        assert header.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"  # empty in the dataset
        assert (header.series_instance_uid, header.study_instance_uid) == ("", "")
        assert header.modality == "CT" and header.is_image and not header.is_dicomdir
        assert (header.rows, header.columns, header.number_of_frames) == (512, 512, 1)
        assert len(header.frames) == 1 and header.frame_error is None
    assert len({h.series_uid for h in headers}) == 1  # the whole series, one stand-in
    assert len({h.study_uid for h in headers}) == 1
    assert all(_valid_uid(h.series_uid) and h.series_uid.startswith("2.25.") for h in headers)


def test_mr_study_headers_keep_the_files_own_uids() -> None:
    headers = [read_header(f) for f in _dicom_files(MR_STUDY)]
    assert len({h.series_uid for h in headers}) == 5
    assert len({h.study_uid for h in headers}) == 1
    for header in headers[::7]:
        ds = pydicom.dcmread(header.path, stop_before_pixels=True)
        assert header.series_uid == header.series_instance_uid == ds.SeriesInstanceUID
        assert header.study_uid == ds.StudyInstanceUID
        assert header.series_description == ds.SeriesDescription
        assert header.modality == "MR" and header.is_image


@pytest.mark.parametrize(
    ("folder", "files", "frames", "size", "planes"),
    [
        ("ge_mprage_iop_jitter", 12, 1, (256, 256), 1),
        ("uih_t1_star_dates", 12, 1, (512, 460), 1),  # "***" in every date: text only here
        ("philips_fmri_4d", 27, 1, (64, 64), 1),
        ("siemens_mosaic_epi", 2, 1, (384, 384), 35),  # one stored image, 35 tiles (slices)
        ("siemens_xa_enhanced_3d", 1, 39, (72, 72), 39),
        ("jpeg_lossless", 8, 1, (86, 86), 1),
    ],
)
def test_vendor_sample_headers(
    folder: str, files: int, frames: int, size: tuple[int, int], planes: int
) -> None:
    headers = [read_header(f) for f in _dicom_files(VENDOR / folder)]
    assert len(headers) == files
    for header in headers:
        assert header.modality == "MR" and header.is_image
        assert (header.rows, header.columns) == size
        assert header.number_of_frames == frames and len(header.frames) == planes
        assert all(_valid_uid(u) for u in (header.sop_instance_uid, header.series_uid))
    assert len({h.series_uid for h in headers}) == 1


def test_seg_header_names_the_series_it_segments() -> None:
    seg = read_header(DCMQI / "liver_seg.dcm")
    ct = read_header(next(CT_3SLICE.iterdir()))
    assert seg.modality == "SEG" and not seg.is_image and seg.frames == ()
    assert seg.referenced_series_uid == ct.series_uid
    assert ct.referenced_series_uid == ""


def test_not_dicom_and_damaged_files_are_told_apart(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not dicom at all")
    with pytest.raises(NotDicomError, match="no DICM preamble") as caught:
        read_header(text)
    assert caught.value.path == text
    cut = tmp_path / "cut.dcm"
    cut.write_bytes((CT_3SLICE / "01.dcm").read_bytes()[:400])  # inside ImageType
    with pytest.raises(DicomError, match="truncated DICOM file") as damaged:
        read_header(cut)
    assert not isinstance(damaged.value, NotDicomError) and damaged.value.path == cut


@given(
    kind=st.sampled_from(["study", "series"]),
    values=st.lists(st.text(max_size=80), max_size=8),
)
def test_stand_in_uid_is_a_valid_deterministic_uid(kind: str, values: list[str]) -> None:
    uid = stand_in_uid(kind, values)
    assert uid.startswith("2.25.") and _valid_uid(uid)
    assert stand_in_uid(kind, list(values)) == uid


def test_stand_in_uid_differs_for_other_values_or_kind() -> None:
    base = ["1.2.3", "MR", "7", "T1"]
    uids = {
        stand_in_uid("series", base),
        stand_in_uid("series", ["1.2.3", "MR", "8", "T1"]),
        stand_in_uid("series", ["1.2.3", "CT", "7", "T1"]),
        stand_in_uid("study", base),
        stand_in_uid("series", ["1.2.3", "MR", "7T1", ""]),  # joined text alone is not enough
    }
    assert len(uids) == 5


def test_stand_in_follows_the_headers_not_the_folder(tmp_path: Path) -> None:
    """A UID-less series keeps its key wherever it is copied; another series gets another."""
    (original,) = scan_folder(CT_3SLICE)
    copies = copy_series(CT_3SLICE, tmp_path / "elsewhere" / "renamed")
    for copy in copies:
        edit_header(copy, SeriesInstanceUID="")
    (moved,) = scan_folder(copies[0].parent)
    assert moved.series_uid == "" and moved.key.startswith("2.25.")
    again = tmp_path / "again"
    shutil.copytree(copies[0].parent, again)
    (same,) = scan_folder(again)
    assert same.key == moved.key == read_header(copies[0]).series_uid
    for copy in copies:
        edit_header(copy, SeriesNumber="99")
    (renumbered,) = scan_folder(copies[0].parent)
    assert renumbered.key != moved.key and renumbered.key != original.key
    assert read_series(again, moved.key).shape == read_series(CT_3SLICE).shape
