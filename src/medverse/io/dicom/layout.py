"""Where a file's pixel data lies, noted by the header pass, so pixels are read without a re-parse.

The header pass already walks each file up to its Pixel Data element. It notes the element's
offset and header bytes and how the values are stored; reading the pixels is then one seek and
one read (uncompressed greyscale: straight into numpy) or the transfer syntax's decoder on the
encapsulated value (compressed), with no second walk of the header and no pydicom dataset. The
element's header bytes are checked again before the read; anything unexpected returns None and
the caller decodes the file the full way (which names whatever is wrong).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

from medverse.io.dicom.fastheader import (
    ENCAPSULATED_PREFIXES,
    NATIVE_SYNTAXES,
    FastHeader,
    element_header,
    read_fast_header,
)
from medverse.io.dicom.values import ascii_values, int_value

_PIXEL_DATA = b"\xe0\x7f\x10\x00"
_UNDEFINED = 0xFFFFFFFF
_OPTIONS = (
    ("samples_per_pixel", "SamplesPerPixel"),
    ("rows", "Rows"),
    ("columns", "Columns"),
    ("bits_allocated", "BitsAllocated"),
    ("bits_stored", "BitsStored"),
    ("pixel_representation", "PixelRepresentation"),
)
"""pydicom decoding options read as integers (the keyword's value, when present)."""


@dataclass(frozen=True)
class PixelLayout:
    """A file's Pixel Data element as the header pass found it.

    Attributes:
        offset: Byte offset of the element (its tag).
        head: The element's tag, VR and length bytes (checked again before reading).
        size: The file's size when it was scanned.
        dtype: numpy dtype of plain uncompressed greyscale values; "" for encapsulated data.
        shape: (frames, rows, columns).
        syntax: The TransferSyntaxUID (encapsulated data).
        options: pydicom's decoding options for encapsulated data (Image Pixel values).
    """

    offset: int
    head: bytes
    size: int
    dtype: str
    shape: tuple[int, int, int]
    syntax: str = ""
    options: tuple[tuple[str, int | str], ...] = ()


def layout_of(header: FastHeader, data: bytes | mmap.mmap) -> PixelLayout | None:
    """The layout of a fast header's pixel data, or None where only pydicom reads it.

    None for big endian or deflated files, colour, float or bit-packed data, signed values
    stored in fewer bits than allocated, and encapsulated data whose length is not undefined.
    """
    ds, offset = header.dataset, header.pixel_offset
    if offset < 0 or data[offset : offset + 4] != _PIXEL_DATA:
        return None
    syntax = header.syntax
    try:
        vr, length, start = element_header(data, offset, syntax != "1.2.840.10008.1.2")
        shape = (
            int_value(ds, "NumberOfFrames", 1),
            int_value(ds, "Rows", 0),
            int_value(ds, "Columns", 0),
        )
        dtype = _plain_greyscale(ds)
    except (AttributeError, TypeError, ValueError, struct.error):
        return None
    head, size = bytes(data[offset:start]), len(data)
    if syntax in NATIVE_SYNTAXES and dtype is not None and length != _UNDEFINED:
        if length < np.prod(shape) * dtype.itemsize or start + length > size:
            return None  # let pydicom name the problem
        return PixelLayout(offset, head, size, dtype.str, shape)
    if syntax.startswith(ENCAPSULATED_PREFIXES) and length == _UNDEFINED and vr != "UN":
        if int_value(ds, "SamplesPerPixel", 1) != 1:
            return None
        return PixelLayout(offset, head, size, "", shape, syntax, _decoder_options(ds, shape[0]))
    return None


def _decoder_options(ds: Dataset, frames: int) -> tuple[tuple[str, int | str], ...]:
    """What pydicom's ``as_pixel_options`` gives for greyscale data, from the raw values."""
    options: list[tuple[str, int | str]] = [("number_of_frames", frames)]
    for option, keyword in _OPTIONS:
        if keyword in ds:
            options.append((option, int_value(ds, keyword, 0)))
    if "PhotometricInterpretation" in ds:
        text = ascii_values(ds, "PhotometricInterpretation")
        value = "\\".join(text) if text is not None else str(ds.PhotometricInterpretation)
        options.append(("photometric_interpretation", value))
    return tuple(options)


def read_layout(path: Path, layout: PixelLayout) -> np.ndarray | None:
    """The pixel data as ``(frames, rows, columns)``; None: decode the file the full way.

    Args:
        path: The file.
        layout: What the header pass noted about its pixel data.
    """
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size != layout.size:
                return None
            handle.seek(layout.offset)
            if handle.read(len(layout.head)) != layout.head:
                return None
            if layout.dtype:
                pixels = np.empty(layout.shape, dtype=layout.dtype)
                if handle.readinto(pixels.data.cast("B")) != pixels.nbytes:
                    return None
                return pixels
            return _decode_encapsulated(handle, layout)
    # Decoders raise many unrelated types on broken data: the full path names the problem.
    except Exception:
        return None


def _decode_encapsulated(handle: BinaryIO, layout: PixelLayout) -> np.ndarray | None:
    decoder = get_decoder(layout.syntax)
    pixels, _ = decoder.as_array(handle, **dict(layout.options))  # type: ignore[arg-type]
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    return pixels if pixels.shape == layout.shape else None


def native_pixels(path: Path, data: bytes | mmap.mmap) -> np.ndarray | None:
    """Uncompressed little-endian greyscale pixel data as ``(frames, rows, columns)``, or None.

    None means "decode with pydicom": compressed, big endian, colour, float, or signed values
    stored in fewer bits than allocated (those need sign extension).

    Raises:
        DicomError: If an element runs past the end of the file (truncated).
    """
    header = read_fast_header(path, data, pixels_only=True)
    layout = layout_of(header, data) if header is not None else None
    if layout is None or not layout.dtype:
        return None
    count = int(np.prod(layout.shape))
    start = layout.offset + len(layout.head)
    pixels = np.frombuffer(data, dtype=layout.dtype, count=count, offset=start)
    return pixels.reshape(layout.shape).copy()


def _plain_greyscale(ds: Dataset) -> np.dtype | None:
    """The numpy dtype of uncompressed plain greyscale values; None for anything else."""
    bits = int_value(ds, "BitsAllocated", 0)
    stored = int_value(ds, "BitsStored", bits)
    signed = int_value(ds, "PixelRepresentation", 0) == 1
    photometric = ascii_values(ds, "PhotometricInterpretation")
    if photometric is None:
        photometric = [str(ds.get("PhotometricInterpretation", "MONOCHROME2"))]
    plain = (
        int_value(ds, "SamplesPerPixel", 1) == 1
        and bits in (8, 16, 32)
        and (not signed or stored == bits)
        and photometric in (["MONOCHROME1"], ["MONOCHROME2"])
        and "Rows" in ds
        and "Columns" in ds
    )
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}") if plain else None
