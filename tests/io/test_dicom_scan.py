"""scan_folder / describe_folder on the real data: grouping, classification, sorting, skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medverse.core.errors import InputError, SeriesSelectionError
from medverse.io.dicom import describe_folder, read_series, scan_folder
from medverse.io.dicom.header import read_header
from tests.conftest import CT_SERIES, DCMQI, MR_STUDY


def test_brain_study_has_five_image_series_with_their_slices() -> None:
    series = scan_folder(MR_STUDY)
    assert {s.description: s.slices for s in series} == {
        "T1post": 22,
        "T1pre_reg": 22,
        "FLAIR_reg": 22,
        "T2_reg": 22,
        "HippoCrop": 40,
    }
    assert all(s.is_image and s.problem is None and s.modality == "MR" for s in series)
    assert len({s.study_uid for s in series}) == 1
    assert len({s.series_uid for s in series}) == 5
    t1 = next(s for s in series if s.description == "T1post")
    assert (t1.rows, t1.columns) == (320, 280)
    assert t1.spacing == pytest.approx((0.6875, 0.6875, 6.5), abs=1e-4)
    assert t1.sop_class_uid == "1.2.840.10008.5.1.4.1.1.4"


def test_files_are_sorted_along_the_oblique_slice_normal() -> None:
    t1 = next(s for s in scan_folder(MR_STUDY) if s.description == "T1post")
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in t1.files]
    iop = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    along = [float(np.dot(normal, [float(v) for v in h.ImagePositionPatient])) for h in headers]
    assert along == sorted(along)
    assert [f.name for f in t1.files] != sorted(f.name for f in t1.files)  # not by file name


def test_non_image_objects_are_listed_but_not_images() -> None:
    scan = describe_folder(DCMQI)
    kinds = {(s.modality, s.is_image) for s in scan.series}
    assert kinds == {("CT", True), ("SEG", False), ("SR", False)}
    seg = next(s for s in scan.series if s.description == "Liver Segmentation")
    assert seg.slices == 3 and seg.spacing is None
    skipped = sorted(f.path.name for f in scan.skipped)
    assert skipped == [
        "SOURCE.md",
        "heart_seg.nrrd",
        "liver_seg.nrrd",
        "spine_seg.nrrd",
    ]
    assert scan.damaged == ()


def test_empty_uids_fall_back_to_file_meta_and_a_stable_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (ct,) = scan_folder(CT_SERIES)
    assert ct.series_uid == ""  # empty in these files
    assert ct.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"  # from MediaStorageSOPClassUID
    assert ct.key == read_header(ct.files[0]).series_uid  # the one stand-in UID rule
    assert ct.key.startswith("2.25.") and len(ct.key) <= 64
    monkeypatch.chdir(CT_SERIES.parent)
    (relative,) = scan_folder(Path(CT_SERIES.name))
    assert relative.key == ct.key  # the same key however the path is written
    assert read_series(CT_SERIES, ct.key).shape == (512, 512, 20)


def test_several_series_need_a_choice_naming_each() -> None:
    with pytest.raises(SeriesSelectionError) as info:
        read_series(MR_STUDY)
    choices = info.value.choices
    assert len(choices) == 5
    for series in scan_folder(MR_STUDY):
        assert any(c.startswith(series.series_uid) and series.description in c for c in choices)
    assert any("40 slices" in c for c in choices)


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        scan_folder(tmp_path / "absent")
