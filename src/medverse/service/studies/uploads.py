"""Receive a multipart upload straight into a staging folder, counting bytes against the limit."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from medverse.service.errors import BadRequestError, PayloadTooLargeError

MAX_FILES = 100_000
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ReceivedFile:
    """One uploaded file (or zip entry) in staging.

    Attributes:
        name: The name the client gave, for messages only (never a path we write to).
        path: The staged copy.
        in_archive: True for an entry unpacked from a zip (a stray one is skipped, not refused).
    """

    name: str
    path: Path
    in_archive: bool = False


def display_name(raw: str) -> str:
    """A client-supplied file name made safe to quote in a message (base name, no controls)."""
    base = raw.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return _UNSAFE.sub("?", base)[:200] or "(unnamed file)"


def size_text(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def too_large(limit: int) -> PayloadTooLargeError:
    """The 413 error for an upload over ``limit`` bytes."""
    return PayloadTooLargeError(
        f"upload too large: the limit is {size_text(limit)} ({limit} bytes, "
        "MEDVERSE_MAX_UPLOAD_BYTES); send the study in several smaller uploads"
    )


@dataclass
class _Parts:
    """Callback state of the streaming parser: each file part goes to its own staged file."""

    folder: Path
    files: list[ReceivedFile] = field(default_factory=list)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    field_name: bytes = b""
    header_value: bytes = b""
    out: BinaryIO | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.headers.clear,
            "on_header_field": lambda d, s, e: self._header_field(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._open,
            "on_part_data": lambda d, s, e: self.out.write(d[s:e]) if self.out else None,
            "on_part_end": self.close,
        }

    def _header_field(self, data: bytes) -> None:
        self.field_name += data

    def _header_value(self, data: bytes) -> None:
        self.header_value += data

    def _header_end(self) -> None:
        self.headers[self.field_name.lower()] = self.header_value
        self.field_name, self.header_value = b"", b""

    def _open(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"filename" not in options:
            return  # a plain form field: ignored
        if len(self.files) >= MAX_FILES:
            raise BadRequestError(f"too many files in one upload (at most {MAX_FILES})")
        path = self.folder / f"{len(self.files):06d}"
        name = display_name(options[b"filename"].decode("utf-8", "replace"))
        self.files.append(ReceivedFile(name, path))
        self.out = path.open("wb")

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


async def receive_files(request: Request, folder: Path, limit: int) -> list[ReceivedFile]:
    """Stream a ``multipart/form-data`` body's file parts into ``folder``.

    Args:
        request: The incoming request.
        folder: An empty staging folder.
        limit: Most bytes the body may have.

    Returns:
        The files, in the order they came.

    Raises:
        PayloadTooLargeError: If the body is (or announces itself as) over ``limit``.
        BadRequestError: If the body is not multipart or holds no file.
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise BadRequestError(
            "send the files as multipart/form-data (field 'files': DICOM files, a zip of "
            "them, or one NIfTI image)"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    parts = _Parts(folder)
    received = 0
    try:
        parser = MultipartParser(options[b"boundary"], parts.callbacks())  # type: ignore[arg-type]
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError):
        raise BadRequestError("malformed multipart/form-data body") from None
    finally:
        parts.close()
    if not parts.files:
        raise BadRequestError("the upload holds no files (use the multipart field 'files')")
    return parts.files
