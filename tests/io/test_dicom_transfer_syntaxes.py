"""Every common transfer syntax decodes to the uncompressed file's voxels (issue 13, item 2).

One real CT slice (the demo series, 12-bit) is written uncompressed, then re-encoded in the
test set-up by DCMTK's encoders (Debian ``dcmtk``), pydicom's JPEG 2000 encoder
(pylibjpeg-openjpeg) or OpenJPH's HTJ2K encoder (imagecodecs, test-only); medverse's decoder
must give back the same voxels (lossy syntaxes: within the stated tolerance).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from medverse.io.dicom.header import read_header
from medverse.io.dicom.layout import read_layout
from medverse.io.dicom.pixels import decode_file, read_stack
from tests.conftest import REPO

CT_SLICE = sorted((REPO / "examples" / "ct_abdomen" / "dicom").iterdir())[10]

# name -> (transfer syntax UID, DCMTK tool and options, max |error| as a fraction of the range)
DCMTK_SYNTAXES = {
    "jpeg_baseline": ("1.2.840.10008.1.2.4.50", ["dcmcjpeg", "+eb", "+q", "95"], 0.05),
    "jpeg_extended": ("1.2.840.10008.1.2.4.51", ["dcmcjpeg", "+ee", "+q", "95"], 0.05),
    "jpeg_lossless_57": ("1.2.840.10008.1.2.4.57", ["dcmcjpeg", "+el"], 0.0),
    "jpeg_lossless_70": ("1.2.840.10008.1.2.4.70", ["dcmcjpeg", "+e1"], 0.0),
    "jpeg_ls_lossless": ("1.2.840.10008.1.2.4.80", ["dcmcjpls", "+el"], 0.0),
    "jpeg_ls_near_lossless": ("1.2.840.10008.1.2.4.81", ["dcmcjpls", "+en", "+md", "2"], 0.0),
    "rle": ("1.2.840.10008.1.2.5", ["dcmcrle"], 0.0),
    "deflated": ("1.2.840.10008.1.2.1.99", ["dcmconv", "+td"], 0.0),
}
NEAR_LOSSLESS_MAX = 2  # dcmcjpls +md 2: every voxel within 2 of the original


def _plain(folder: Path, *, eight_bit: bool = False) -> Path:
    """The CT slice decoded and written Explicit VR Little Endian (8-bit for baseline JPEG)."""
    ds = pydicom.dcmread(CT_SLICE)
    ds.decompress()
    if eight_bit:  # baseline JPEG carries 8-bit samples only: window the same real slice
        pixels = ds.pixel_array.astype(np.float64)
        ds.PixelData = np.round(255 * pixels / pixels.max()).astype(np.uint8).tobytes()
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    # DCMTK's lossy encoders store values after the modality LUT: keep it the identity here
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    path = folder / ("plain8.dcm" if eight_bit else "plain.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def _decoded(path: Path) -> np.ndarray:
    """The file's voxels as a series read gets them, checked equal to the full decode.

    A series read decodes from where the header pass found the pixel data (no second parse).
    """
    frames = read_header(path).frames
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if syntax != DeflatedExplicitVRLittleEndian:  # deflated: pydicom reads the whole file
        layout = frames[0].layout
        assert layout is not None and read_layout(path, layout) is not None
        if not layout.dtype:  # encapsulated: the decoder gets what pydicom would give it
            header = pydicom.dcmread(path, stop_before_pixels=True)
            assert dict(layout.options) == as_pixel_options(header)
    by_layout = read_stack(frames)
    full = decode_file(path)
    assert by_layout.dtype == full.dtype and np.array_equal(by_layout, full)
    return full


def _dcmtk(command: list[str], source: Path, target: Path) -> Path:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} not installed (Debian dcmtk: make system-deps)")
    subprocess.run([*command, str(source), str(target)], check=True, capture_output=True)
    return target


@pytest.mark.parametrize("name", sorted(DCMTK_SYNTAXES))
def test_dcmtk_encoded_slice_decodes_to_the_uncompressed_voxels(name: str, tmp_path: Path) -> None:
    syntax, command, tolerance = DCMTK_SYNTAXES[name]
    plain = _plain(tmp_path, eight_bit=name == "jpeg_baseline")
    encoded = _dcmtk(command, plain, tmp_path / f"{name}.dcm")
    assert pydicom.dcmread(encoded, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    expected = decode_file(plain).astype(np.int64)
    decoded = _decoded(encoded).astype(np.int64)
    assert decoded.shape == expected.shape
    error = np.abs(decoded - expected)
    if name == "jpeg_ls_near_lossless":
        assert error.max() <= NEAR_LOSSLESS_MAX
    elif tolerance == 0.0:
        assert np.array_equal(decoded, expected)
    else:  # lossy: within the tolerance of the value range, and close on average
        value_range = float(expected.max() - expected.min())
        assert error.max() <= tolerance * value_range
        assert error.mean() <= 0.005 * value_range


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless], ids=["jpeg2000", "rle_pydicom"])
def test_pydicom_encoded_slice_decodes_to_the_uncompressed_voxels(
    syntax: str, tmp_path: Path
) -> None:
    plain = _plain(tmp_path)
    ds = pydicom.dcmread(plain)
    ds.compress(syntax)
    encoded = tmp_path / "encoded.dcm"
    ds.save_as(encoded)
    assert pydicom.dcmread(encoded).file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(_decoded(encoded), decode_file(plain))


# HTJ2K (PS3.5 A.4.11): name -> (transfer syntax UID, encoder options, max |error| / range)
HTJ2K_SYNTAXES = {
    "htj2k_lossless": ("1.2.840.10008.1.2.4.201", {"reversible": True}, 0.0),
    "htj2k_lossless_rpcl": ("1.2.840.10008.1.2.4.202", {"reversible": True, "tlm": True}, 0.0),
    "htj2k_lossy": ("1.2.840.10008.1.2.4.203", {"reversible": False, "level": 0.0005}, 0.05),
}
RPCL = 2  # the progression order byte of the COD marker


@pytest.mark.parametrize("name", sorted(HTJ2K_SYNTAXES))
def test_htj2k_encoded_slice_decodes_to_the_uncompressed_voxels(name: str, tmp_path: Path) -> None:
    """The CT slice encoded by OpenJPH (imagecodecs, test-only) and wrapped as HTJ2K DICOM."""
    imagecodecs = pytest.importorskip("imagecodecs", reason="pip install -r requirements-dev.txt")
    from pydicom.encaps import encapsulate

    syntax, options, tolerance = HTJ2K_SYNTAXES[name]
    plain = _plain(tmp_path)
    ds = pydicom.dcmread(plain)
    codestream = imagecodecs.htj2k_encode(ds.pixel_array, **options)
    if syntax.endswith(".202"):  # RPCL progression and TLM marker segments (PS3.5 A.4.11)
        cod = codestream.index(b"\xff\x52")  # COD: marker, Lcod (2), Scod (1), progression
        assert codestream[cod + 5] == RPCL and b"\xff\x55" in codestream
    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    encoded = tmp_path / f"{name}.dcm"
    ds.save_as(encoded, enforce_file_format=True)
    assert pydicom.dcmread(encoded, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    expected = decode_file(plain).astype(np.int64)
    decoded = _decoded(encoded).astype(np.int64)
    assert decoded.shape == expected.shape
    error = np.abs(decoded - expected)
    if tolerance == 0.0:
        assert np.array_equal(decoded, expected)
    else:  # lossy: not the same voxels, but within the tolerance and close on average
        value_range = float(expected.max() - expected.min())
        assert 0 < error.max() <= tolerance * value_range
        assert error.mean() <= 0.005 * value_range
