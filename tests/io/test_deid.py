"""De-identification on the real CT series and brain MR study: no PHI left, geometry kept."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medverse.cli.main import main
from medverse.core.errors import InputError
from medverse.core.volume import LabelMap
from medverse.io.deid import DeidSummary, deidentify
from medverse.io.deid.dataset import shift_date, shift_datetime
from medverse.io.deid.profile import Action, action_for
from medverse.io.dicom import read_series, scan_folder
from medverse.io.seg import read_seg, write_seg
from tests.conftest import CT_SERIES, DCMQI, MR_STUDY, REPO
from tests.io.dicom_helpers import (
    CT_3SLICE,
    T1POST,
    VENDOR_SAMPLES,
    copy_series,
    dciodvfy_errors,
    truncate,
)

CHANGED = {Action.REMOVE, Action.EMPTY, Action.DUMMY, Action.UID, Action.PSEUDONYM, Action.SHIFT}


def deid(src: Path, tmp: Path) -> tuple[DeidSummary, Path, Path]:
    out, mapping = tmp / "out", tmp / "mapping.json"
    return deidentify(src, out, mapping), out, mapping


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DeidSummary, Path, Path]:
    return deid(CT_SERIES, tmp_path_factory.mktemp("deid_ct"))


@pytest.fixture(scope="module")
def mr_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DeidSummary, Path, Path]:
    return deid(MR_STUDY, tmp_path_factory.mktemp("deid_mr"))


def walk(ds: Dataset) -> Iterator[pydicom.DataElement]:
    """Every element, sequence items included (file meta too)."""
    meta = getattr(ds, "file_meta", None)
    yield from meta or []
    for element in ds:
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from walk(item)


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".md")


def sop_uid(ds: Dataset) -> str:
    return str(ds.SOPInstanceUID or ds.file_meta.MediaStorageSOPInstanceUID)


def pairs(src: Path, out: Path, mapping: Path) -> list[tuple[Dataset, Dataset]]:
    """(original, de-identified) datasets, matched through the UID map."""
    uids = json.loads(mapping.read_text())["uids"]
    found = []
    for file in dicom_files(src):
        original = pydicom.dcmread(file)
        (copy,) = out.rglob(f"{uids[sop_uid(original)]}.dcm")
        found.append((original, pydicom.dcmread(copy)))
    return found


@pytest.mark.parametrize("run", ["ct_run", "mr_run"])
def test_no_value_the_profile_changes_survives(run: str, request: pytest.FixtureRequest) -> None:
    summary, _, _ = request.getfixturevalue(run)
    src = CT_SERIES if run == "ct_run" else MR_STUDY
    originals: dict[int, set[str]] = {}
    for file in dicom_files(src):
        for element in walk(pydicom.dcmread(file)):
            if action_for(element.tag, element.VR) in CHANGED and element.value not in ("", None):
                originals.setdefault(element.tag, set()).add(str(element.value))
    assert len(originals) > 15  # names, IDs, dates, UIDs, institution, ... were there
    for file in summary.written:
        for element in walk(pydicom.dcmread(file)):
            assert not element.tag.is_private, f"{file.name}: private {element.tag}"
            if element.value not in ("", None):
                assert str(element.value) not in originals.get(element.tag, ()), element.tag


def test_mr_names_ids_and_uids_are_gone_from_every_byte(
    mr_run: tuple[DeidSummary, Path, Path],
) -> None:
    summary, _, _ = mr_run
    secrets = {b"Albus", b"Dumbledore", b"PGBM-003", b"3083564386975476", b"Brain-Tumor"}
    for file in dicom_files(MR_STUDY):
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        secrets |= {
            e.value.encode()
            for e in walk(ds)
            if e.VR == "UI"
            and e.keyword != "SOPClassUID"
            and len(str(e.value)) > 30  # instance UIDs, not well-known class UIDs
        }
    assert len(summary.written) == 128 and summary.patients == 1
    for file in summary.written:
        data = file.read_bytes()
        assert not [s for s in secrets if s in data], file.name
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientName == ds.PatientID != ""
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
            "113100",
            "113107",
        ]
        assert "SeriesDescription" not in ds and "PatientAge" not in ds
    assert [f.path.name for f in summary.skipped] == ["SOURCE.md"]


def test_ct_institution_station_and_address_are_gone(
    ct_run: tuple[DeidSummary, Path, Path],
) -> None:
    summary, _, _ = ct_run
    assert len(summary.written) == 20 and not summary.failed
    for file in summary.written:
        data = file.read_bytes()
        assert b"Petersgraben" not in data and b"PETCT2" not in data and b"SIEMENS CSA" not in data


@pytest.mark.parametrize("run", ["ct_run", "mr_run"])
def test_dates_move_by_one_offset_and_times_stay(run: str, request: pytest.FixtureRequest) -> None:
    _, out, mapping = request.getfixturevalue(run)
    src = CT_SERIES if run == "ct_run" else MR_STUDY
    (entry,) = json.loads(mapping.read_text())["patients"].values()
    shifts = set()
    for original, copy in pairs(src, out, mapping):
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            if original.get(keyword):
                before = dt.datetime.strptime(original[keyword].value, "%Y%m%d")
                after = dt.datetime.strptime(copy[keyword].value, "%Y%m%d")
                shifts.add((after - before).days)
        for keyword in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"):
            assert copy.get(keyword) == original.get(keyword)
        if original.get("AcquisitionDateTime"):
            assert copy.AcquisitionDateTime[8:] == original.AcquisitionDateTime[8:]
        assert copy.get("PatientBirthDate", "") == ""
    assert shifts == {entry["date_offset_days"]}
    assert -3650 <= entry["date_offset_days"] <= -30


def test_ct_reads_to_the_same_voxels_geometry_and_pixel_bytes(
    ct_run: tuple[DeidSummary, Path, Path],
) -> None:
    _, out, mapping = ct_run
    before, after = read_series(CT_SERIES), read_series(out)
    assert np.array_equal(before.array, after.array)
    assert np.array_equal(before.affine, after.affine)
    uids = json.loads(mapping.read_text())["uids"]
    assert before.dicom is not None and after.dicom is not None
    assert after.dicom.sop_instance_uids == tuple(uids[u] for u in before.dicom.sop_instance_uids)
    for original, copy in pairs(CT_SERIES, out, mapping):
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert copy.PixelData == original.PixelData  # JPEG 2000 stream untouched


def test_oblique_mr_series_reads_the_same(mr_run: tuple[DeidSummary, Path, Path]) -> None:
    _, out, mapping = mr_run
    uids = json.loads(mapping.read_text())["uids"]
    before = read_series(T1POST)
    assert before.dicom is not None
    after = read_series(out, series_uid=uids[before.dicom.series_instance_uid])
    assert np.array_equal(before.array, after.array)
    assert np.allclose(before.affine, after.affine)
    assert len(scan_folder(out)) == 5
    assert {s.study_uid for s in scan_folder(out)} == {uids[before.dicom.study_instance_uid]}


def test_a_second_run_with_the_same_mapping_gives_identical_files(
    ct_run: tuple[DeidSummary, Path, Path], tmp_path: Path
) -> None:
    summary, out, mapping = ct_run
    kept = mapping.read_text()
    again = deidentify(CT_SERIES, tmp_path / "again", mapping)
    assert mapping.read_text() == kept
    first = {p.relative_to(out): p.read_bytes() for p in summary.written}
    second = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in again.written}
    assert first == second


def test_seg_on_the_deidentified_series_references_its_new_instances(
    ct_run: tuple[DeidSummary, Path, Path], tmp_path: Path
) -> None:
    _, out, _ = ct_run
    ct = read_series(out)
    array = np.zeros(ct.shape, dtype=np.uint8)
    array[200:300, 150:250, 5:15] = 5
    seg = write_seg(LabelMap(array, ct.affine, {}, labels={5: "liver"}), ct, tmp_path / "s.dcm")
    ds = pydicom.dcmread(seg)
    referenced = {
        i.ReferencedSOPInstanceUID
        for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert ct.dicom is not None
    assert referenced == set(ct.dicom.sop_instance_uids)
    assert all(u.startswith("2.25.") for u in referenced)
    assert str(ds.PatientName).startswith("MV-")
    assert np.array_equal(read_seg(seg, reference=ct).array, array)


def test_a_seg_and_its_series_still_match_after_deidentification(tmp_path: Path) -> None:
    src = tmp_path / "src"
    copy_series(CT_3SLICE, src / "ct")
    shutil.copy2(DCMQI / "liver_seg.dcm", src / "liver_seg.dcm")
    summary, _, _ = deid(src, tmp_path)
    assert len(summary.written) == 4
    (seg_file,) = [p for p in summary.written if pydicom.dcmread(p).Modality == "SEG"]
    before = read_seg(DCMQI / "liver_seg.dcm", reference=read_series(CT_3SLICE))
    ct_folder = next(p.parent for p in summary.written if p != seg_file)
    after = read_seg(seg_file, reference=read_series(ct_folder))
    assert np.array_equal(before.array, after.array)


def test_cli_reports_a_truncated_file_and_writes_nothing_for_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    files = copy_series(CT_SERIES, src)
    truncate(files[0], 0.5)  # an end slice: the rest stays a regular series
    (src / "notes.txt").write_text("not an image")
    code = main(["deid", str(src), str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1
    assert "de-identified 19 file(s) of 1 patient(s)" in out
    assert f"{files[0]}: truncated DICOM file" in out
    assert f"{src / 'notes.txt'}: not DICOM" in out
    assert (tmp_path / "out-deid-mapping.json").is_file()  # beside the output, not in it
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(written) == 19 and not [p for p in written if p.name.startswith(".")]
    assert read_series(tmp_path / "out").shape == (512, 512, 19)


def test_cli_one_line_errors_for_bad_mapping_and_output_inside_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "mapping.json"
    bad.write_text("{not json")
    assert main(["deid", str(CT_SERIES), str(tmp_path / "o"), "--mapping", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(bad) in err and "not readable JSON" in err
    assert not (tmp_path / "o").exists()
    src = tmp_path / "in"
    copy_series(CT_3SLICE, src)
    with pytest.raises(InputError, match="must not be the input folder or inside it"):
        deidentify(src, src / "anon", tmp_path / "m.json")
    with pytest.raises(InputError, match="no DICOM files found"):
        deidentify(bad, tmp_path / "o2", tmp_path / "m.json")


def test_keep_descriptions_keeps_them(tmp_path: Path) -> None:
    summary = deidentify(T1POST, tmp_path / "o", tmp_path / "m.json", keep_descriptions=True)
    ds = pydicom.dcmread(summary.written[0])
    assert ds.SeriesDescription == "T1post" and ds.ProtocolName == "B Ax T1 +C"


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("20221208", -10, "20221128"),
        ("20221208140352.457000", -365, "20211208140352.457000"),
        ("20221208140352+0100", 1, "20221209140352+0100"),
        ("202212", -31, "202211"),
        ("2022", -400, "2021"),
        ("garbage", 5, ""),
    ],
)
def test_date_and_datetime_shifts(value: str, days: int, expected: str) -> None:
    shift = shift_date if len(value) == 8 else shift_datetime
    assert shift(value, days) == expected


@pytest.mark.parametrize(
    ("keyword", "vr", "action"),
    [
        ("PatientName", "PN", Action.PSEUDONYM),
        ("PatientBirthDate", "DA", Action.EMPTY),
        ("StudyDate", "DA", Action.SHIFT),
        ("StudyTime", "TM", Action.KEEP),
        ("DateOfLastCalibration", "DA", Action.REMOVE),
        ("ContrastBolusStartTime", "TM", Action.REMOVE),
        ("InstitutionName", "LO", Action.EMPTY),
        ("ProtocolName", "LO", Action.REMOVE),
        ("ReferencedImageSequence", "SQ", Action.RECURSE),
        ("ReferencedStudySequence", "SQ", Action.REMOVE),
        ("ReferencedSOPInstanceUID", "UI", Action.UID),
        ("ScheduledPerformingPhysicianName", "PN", Action.REMOVE),
        ("ContentCreatorName", "PN", Action.EMPTY),
        ("Manufacturer", "LO", Action.KEEP),
    ],
)
def test_profile_actions(keyword: str, vr: str, action: Action) -> None:
    assert action_for(pydicom.datadict.tag_for_keyword(keyword) or 0, vr) is action


@pytest.mark.parametrize(
    "folder",
    [REPO / "examples" / "ct_abdomen" / "dicom", *sorted(VENDOR_SAMPLES.glob("[gpsu]*"))],
    ids=lambda p: p.name if p.name != "dicom" else "demo_ct",
)
def test_deidentified_files_pass_dciodvfy_with_no_error_of_their_own(
    folder: Path, tmp_path: Path
) -> None:
    """Every de-identified file passes dciodvfy: no error the source file does not have already.

    The sources' own errors (vendor Laterality/TriggerTime/MR pulse-sequence conditionals)
    are inherited, not made by de-identification; none is a Type 1 attribute left empty.
    """
    deidentify(folder, tmp_path / "out", tmp_path / "map.json")
    written = sorted((tmp_path / "out").rglob("*"))
    originals = {_instance_uid(f): f for f in folder.iterdir()}
    mapping = {
        new: old for old, new in json.loads((tmp_path / "map.json").read_text())["uids"].items()
    }
    files = [f for f in written if f.is_file()]
    assert files
    for file in files:
        errors = dciodvfy_errors(file)
        assert not [e for e in errors if "Type 1 Required" in e], file.name
        source = originals[mapping[_instance_uid(file)]]
        assert set(errors) <= set(dciodvfy_errors(_as_readers_see_it(source, tmp_path))), file.name


def _instance_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)


def _as_readers_see_it(source: Path, folder: Path) -> Path:
    """The source with empty SOP Class/Instance UIDs filled from its file meta, as readers do.

    The validator can then tell its IOD and check it as fully as the de-identified copy.
    """
    ds = pydicom.dcmread(source)
    ds.SOPClassUID = ds.SOPClassUID or ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.SOPInstanceUID or ds.file_meta.MediaStorageSOPInstanceUID
    path = folder / "source-as-read.dcm"
    ds.save_as(path)
    return path
