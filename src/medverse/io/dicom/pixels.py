"""DICOM pixel decoding: frames of files into one stack, rescaled to real-world values."""

from __future__ import annotations

import mmap
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medverse.core.errors import DicomError, error_text
from medverse.io.dicom.geometry import Frame
from medverse.io.dicom.header import PIXEL_KEYWORDS, read_dataset
from medverse.io.dicom.layout import native_pixels, read_layout
from medverse.io.dicom.mosaic import untile

DECODE_THREADS = min(8, os.cpu_count() or 1)
"""Files decoded at once by :func:`read_stack`."""
THREAD_MIN_FILES = 4
"""Compressed files in a stack before they are decoded in threads (fewer: not worth one)."""


def read_stack(frames: Sequence[Frame]) -> np.ndarray:
    """Decode the frames into a ``(k, rows, columns)`` array of stored pixel values.

    Each file is read and decoded once, however many of its frames are used; files are
    decoded in parallel threads (the decoders and numpy release the GIL for the heavy part).
    A Siemens mosaic's one stored image is cut into its tiles first.

    Args:
        frames: Frames in the wanted k order.

    Raises:
        DicomError: Naming the file whose pixel data is missing, truncated or undecodable.
    """
    first = frames[0]
    by_file: dict[Path, list[int]] = {}
    for k, frame in enumerate(frames):
        by_file.setdefault(frame.path, []).append(k)
    stack: np.ndarray | None = None
    for path, pixels in _decode_all(list(by_file), frames, by_file):
        if stack is None:
            stack = np.empty((len(frames), first.rows, first.columns), dtype=pixels.dtype)
        if pixels.shape[1:] != stack.shape[1:]:
            raise DicomError(
                f"pixel data is {pixels.shape[1]}x{pixels.shape[2]} but the series is "
                f"{first.rows}x{first.columns}",
                path,
            )
        if pixels.dtype != stack.dtype:
            stack = stack.astype(np.result_type(stack.dtype, pixels.dtype))
        for k in by_file[path]:
            index = frames[k].index
            if index >= pixels.shape[0]:
                raise DicomError(f"frame {index + 1} is missing from the pixel data", path)
            stack[k] = pixels[index]
    assert stack is not None
    return stack


def _decode_all(
    paths: list[Path], frames: Sequence[Frame], by_file: dict[Path, list[int]]
) -> Iterator[tuple[Path, np.ndarray]]:
    """Decode each file once, in the order of ``paths``; compressed ones in parallel threads."""

    def one(path: Path) -> np.ndarray:
        first = frames[by_file[path][0]]
        pixels = read_layout(path, first.layout) if first.layout is not None else None
        if pixels is None:
            pixels = decode_file(path)
        if first.mosaic_tiles:
            count = 1 + max(f.index for f in (frames[k] for k in by_file[path]))
            pixels = untile(pixels[0], first, count)
        return pixels

    # Uncompressed files are one read each: a thread costs more than it saves on those.
    compressed = sum(1 for p in paths if _needs_decoder(frames[by_file[p][0]]))
    workers = min(compressed, DECODE_THREADS) if compressed >= THREAD_MIN_FILES else 1
    if workers <= 1:
        yield from ((path, one(path)) for path in paths)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dicom-decode") as pool:
        yield from zip(paths, pool.map(one, paths))


def _needs_decoder(frame: Frame) -> bool:
    return frame.layout is None or not frame.layout.dtype


def decode_file(path: Path) -> np.ndarray:
    """Read one file and return its pixel data as ``(frames, rows, columns)``.

    Raises:
        DicomError: If the file cannot be parsed, has no pixel data, is truncated, uses a
            transfer syntax no installed decoder handles, or is a colour image.
    """
    # pydicom converts values lazily and warns about odd ones on access: keep stderr clean.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _decode(path)
        except DicomError:
            raise
        # A damaged header makes pydicom raise many types when a value is first converted.
        except Exception as error:
            raise DicomError(f"is unreadable or damaged ({error_text(error)})", path) from None


def _decode(path: Path) -> np.ndarray:
    native = _native(path)
    if native is not None:
        return native
    ds = read_dataset(path)
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        raise DicomError("has no pixel data (file truncated or not an image)", path)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise DicomError(
            f"is a colour image ({ds.get('PhotometricInterpretation', '?')}); "
            "only greyscale volumes are supported",
            path,
        )
    try:
        pixels = ds.pixel_array
    # Decoders (numpy, pylibjpeg, openjpeg, ...) raise many unrelated types on broken data.
    except Exception as error:
        raise DicomError(_decode_problem(ds, error), path) from None
    expected_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    if pixels.ndim != 3 or pixels.shape[0] != expected_frames:
        raise DicomError(
            f"pixel data has shape {pixels.shape}, expected {expected_frames} frame(s)", path
        )
    return pixels


def _native(path: Path) -> np.ndarray | None:
    """Uncompressed pixels read straight from the file (no pydicom parse); None otherwise."""
    try:
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
        ):
            if len(data) < 132 or data[128:132] != b"DICM":
                return None
            return native_pixels(path, data)
    except (OSError, ValueError, struct.error):
        return None


def _decode_problem(ds: Dataset, error: BaseException) -> str:
    syntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None
    name = getattr(syntax, "name", str(syntax))
    text = error_text(error)
    if "missing" in text.lower() and ("plugin" in text.lower() or "decod" in text.lower()):
        return (
            f"pixel data cannot be decoded: no installed decoder for {name} "
            "(pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg pylibjpeg-rle pyjpegls)"
        )
    return f"pixel data is truncated or corrupt ({name}: {text})"


def rescale(stack: np.ndarray, frames: Sequence[Frame]) -> np.ndarray:
    """Apply each frame's RescaleSlope/Intercept (CT comes out in HU).

    Stored values are kept as they are when every slope is 1 and every intercept 0; otherwise
    the result is float32, computed slice by slice in float64 for accuracy.

    Args:
        stack: ``(k, rows, columns)`` stored values, in the order of ``frames``.
        frames: The frames, carrying slope and intercept.
    """
    slopes = np.array([f.slope for f in frames], dtype=np.float64)
    intercepts = np.array([f.intercept for f in frames], dtype=np.float64)
    if np.all(slopes == 1.0) and np.all(intercepts == 0.0):
        return stack
    out = np.empty(stack.shape, dtype=np.float32)
    for k in range(stack.shape[0]):
        out[k] = stack[k].astype(np.float64) * slopes[k] + intercepts[k]
    return out
