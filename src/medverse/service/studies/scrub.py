"""Blank a NIfTI image's free-text header fields and extensions before it is stored.

NIfTI headers hold no demographics by design, but scanners and converters write free text
(``descrip``, ``aux_file``, ``intent_name``, ``db_name``) and extensions (DICOM tags, XML) that
can name the patient. The stored copy is the one researchers receive, so it keeps the voxels and
geometry byte for byte and drops all of that text.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib

from medverse.io.atomic import atomic_path

FREE_TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")
_NIFTI2_SIZE = 540


def scrub_nifti(source: Path, target: Path) -> None:
    """Write ``source`` to ``target`` with its free-text fields and extensions blanked.

    The voxel bytes, geometry and scaling are copied unchanged; ``target`` is gzipped when its
    name ends in ``.gz``.

    Args:
        source: A checked NIfTI-1 or NIfTI-2 single file (``.nii`` or ``.nii.gz``).
        target: Where the scrubbed copy goes (written atomically).
    """
    raw = _read(source)
    size = int.from_bytes(raw[:4], "little")
    if size not in (348, _NIFTI2_SIZE):
        size = int.from_bytes(raw[:4], "big")
    klass = nib.Nifti2Header if size == _NIFTI2_SIZE else nib.Nifti1Header
    header = klass.from_fileobj(io.BytesIO(raw))
    voxels = memoryview(raw)[int(header["vox_offset"]) :]
    for name in FREE_TEXT_FIELDS:
        if name in header:
            header[name] = b""
    header.extensions.clear()
    header["vox_offset"] = 0  # nibabel sets the smallest offset for no extensions
    out = io.BytesIO()
    header.write_to(out)
    out.write(b"\0" * (int(header["vox_offset"]) - out.tell()))
    out.write(voxels)
    with atomic_path(target) as tmp:
        if target.name.endswith(".gz"):
            with tmp.open("wb") as raw_out, gzip.GzipFile("", "wb", 6, raw_out, mtime=0) as handle:
                handle.write(out.getbuffer())
        else:
            tmp.write_bytes(out.getbuffer())


def _read(path: Path) -> bytes:
    with path.open("rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            return handle.read()
    return path.read_bytes()
