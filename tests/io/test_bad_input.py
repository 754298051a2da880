"""Bad input through the CLI: one clear line on stderr, non-zero exit, no half-written output."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from medverse.cli.main import main
from tests.conftest import CT_SERIES, HIPPOCAMPUS, MR_STUDY
from tests.io.dicom_helpers import (
    CT_3SLICE,
    HIPPO_CROP,
    T1POST,
    copy_files,
    copy_series,
    hippo_slice,
    truncate,
)

PREVIOUS = b"previous conversion, must survive a failed one"


def _fails_cleanly(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    names: list[str],
    problem: str,
    output: Path,
    previous: bytes | None,
) -> str:
    """Run the CLI and check the failure contract; return the error line."""
    if previous is not None:
        output.write_bytes(previous)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0]
    assert problem in lines[0]
    if previous is None:
        assert not output.exists()
    else:
        assert output.read_bytes() == previous
    assert not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.stem}")]
    return lines[0]


@pytest.mark.parametrize("previous", [None, PREVIOUS], ids=["no_output_yet", "output_exists"])
@pytest.mark.parametrize(
    ("source", "keep", "problem"),
    [
        (HIPPO_CROP, 0.6, "pixel data is truncated or corrupt"),  # uncompressed, cut in pixels
        (CT_SERIES, 0.6, "has no pixel data"),  # JPEG 2000, cut inside the encapsulated frame
        (CT_3SLICE, 900, "truncated DICOM file (ends inside element"),  # cut in the header
    ],
    ids=["uncompressed_mr", "jpeg2000_ct", "header"],
)
def test_truncated_dicom_file_is_named(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    source: Path,
    keep: int | float,
    problem: str,
    previous: bytes | None,
) -> None:
    copies = copy_series(source, tmp_path / "series")
    victim = copies[1]
    truncate(victim, keep)
    output = tmp_path / "out.nii.gz"
    argv = ["convert", str(tmp_path / "series"), str(output)]
    _fails_cleanly(capsys, argv, [str(victim)], problem, output, previous)


def test_two_series_ask_for_series_then_series_uid_works(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    copy_series(HIPPO_CROP, tmp_path / "study" / "a")
    copy_series(T1POST, tmp_path / "study" / "b")
    output = tmp_path / "out.nii.gz"
    argv = ["convert", str(tmp_path / "study"), str(output)]
    line = _fails_cleanly(capsys, argv, [str(tmp_path / "study")], "--series", output, None)
    assert "holds 2 series" in line
    assert "HippoCrop" in line and "T1post" in line
    t1_uid = line.split("(MR, 'T1post'")[0].split("; ")[-1].split(": ")[-1].strip()
    assert t1_uid.startswith("1.3.6.1.4.1.14519")

    assert main([*argv, "--series", t1_uid]) == 0
    out, _ = capsys.readouterr()
    assert "280 x 320 x 22" in out
    assert output.is_file()


def test_junk_files_beside_a_series_are_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    copy_series(CT_3SLICE, folder)
    (folder / "README.txt").write_text("exported by the PACS\n")
    (folder / "Thumbs.db").write_bytes(bytes(range(256)) * 8)
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "notes").mkdir()
    (folder / "notes" / "report.pdf").write_bytes(b"%PDF-1.4 fake")
    output = tmp_path / "ct.nii.gz"
    assert main(["convert", str(folder), str(output)]) == 0
    assert output.is_file()
    assert main(["info", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert "4 file(s) skipped (not DICOM)" in out
    assert err == ""


def test_damaged_dicom_beside_a_series_is_not_silently_dropped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    copy_series(CT_3SLICE, folder)
    fake = folder / "04.dcm"
    fake.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    output = tmp_path / "ct.nii.gz"
    argv = ["convert", str(folder), str(output)]
    _fails_cleanly(capsys, argv, [str(fake)], "DICOM", output, None)


@pytest.mark.parametrize("previous", [None, PREVIOUS], ids=["no_output_yet", "output_exists"])
def test_empty_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, previous: bytes | None
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    output = tmp_path / "out.nii.gz"
    argv = ["convert", str(empty), str(output)]
    _fails_cleanly(capsys, argv, [str(empty)], "is empty", output, previous)
    argv = ["info", str(empty)]
    _fails_cleanly(capsys, argv, [str(empty)], "is empty", output, previous)


def test_folder_with_only_non_dicom_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    copy_files([MR_STUDY / "SOURCE.md"], folder)
    output = tmp_path / "out.nii.gz"
    argv = ["convert", str(folder), str(output)]
    _fails_cleanly(capsys, argv, [str(folder)], "holds no DICOM files", output, None)


@pytest.mark.parametrize("as_folder", [False, True], ids=["file", "folder"])
def test_single_2d_image(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, as_folder: bool
) -> None:
    source = hippo_slice(3)
    if as_folder:
        copy_files([source], tmp_path / "one")
        source = tmp_path / "one"
    output = tmp_path / "out.nii.gz"
    argv = ["convert", str(source), str(output)]
    _fails_cleanly(capsys, argv, [str(source)], "single 2D image", output, PREVIOUS)


def _corrupt_nifti(path: Path, offset: int, data: bytes) -> None:
    source = HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz"
    raw = bytearray(gzip.decompress(source.read_bytes()))
    raw[offset : offset + len(data)] = data
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.mark.parametrize("previous", [None, PREVIOUS], ids=["no_output_yet", "output_exists"])
@pytest.mark.parametrize(
    ("offset", "data"),
    [(344, b"xxxx"), (40, struct.pack("<4h", 3, -35, 51, 35))],
    ids=["magic", "negative_dim"],
)
def test_nifti_with_broken_header(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    offset: int,
    data: bytes,
    previous: bytes | None,
) -> None:
    broken = tmp_path / "broken.nii.gz"
    _corrupt_nifti(broken, offset, data)
    output = tmp_path / "out.nii.gz"
    argv = ["convert", str(broken), str(output)]
    _fails_cleanly(capsys, argv, [str(broken)], "NIfTI", output, previous)


def test_missing_input_and_wrong_output_suffix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    output = tmp_path / "out.nii.gz"
    _fails_cleanly(
        capsys, ["convert", str(missing), str(output)], [str(missing)], "no such", output, None
    )
    wrong = tmp_path / "out.png"
    argv = ["convert", str(CT_3SLICE), str(wrong)]
    _fails_cleanly(capsys, argv, [str(wrong)], ".nii.gz", wrong, None)


def test_garbled_header_is_named_not_a_crash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    copies = copy_series(HIPPO_CROP, tmp_path / "series")
    victim = copies[1]
    data = bytearray(victim.read_bytes())
    at = data.index(b"\x20\x00\x0d\x00UI")  # StudyInstanceUID, explicit VR little endian
    data[at + 4 : at + 6] = b"Uq"  # a value representation that does not exist
    victim.write_bytes(bytes(data))
    output = tmp_path / "out.nii.gz"
    argv = ["convert", str(tmp_path / "series"), str(output)]
    _fails_cleanly(capsys, argv, [str(victim)], "unreadable DICOM header", output, PREVIOUS)
