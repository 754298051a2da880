"""Unpack uploaded zip archives safely: no path traversal, no links, no zip bombs."""

from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medverse.service.errors import BadRequestError
from medverse.service.studies.uploads import ReceivedFile, size_text

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# Folders and files that archivers add and that carry no image.
IGNORED_PARTS = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
# Entries this small cannot make a bomb, whatever their ratio.
_RATIO_FLOOR_BYTES = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """What one zip upload may unpack to.

    Attributes:
        max_entries: Most file entries.
        max_total_bytes: Most bytes in total once unpacked.
        max_ratio: Highest uncompressed/compressed ratio of an entry over 1 MiB.
    """

    max_entries: int
    max_total_bytes: int
    max_ratio: float


def is_zip(path: Path) -> bool:
    """True if the file starts like a zip archive."""
    with path.open("rb") as handle:
        return handle.read(4) in ZIP_MAGIC


def expand_archives(
    files: list[ReceivedFile], folder: Path, limits: ArchiveLimits
) -> list[ReceivedFile]:
    """Replace every zip among ``files`` by its entries, unpacked into ``folder``.

    Entries are written under numbered names, never under their archive path; any entry
    whose path is absolute, climbs out with ``..`` or is a symbolic link refuses the whole
    upload, as do archives over the entry-count, total-size or compression-ratio limits.

    Raises:
        BadRequestError: Naming the archive (and entry) and the problem.
    """
    result: list[ReceivedFile] = []
    total = 0
    for number, file in enumerate(files):
        if not is_zip(file.path):
            result.append(file)
            continue
        target = folder / f"zip{number:06d}"
        target.mkdir()
        entries, total = _unpack(file, target, limits, total)
        result.extend(entries)
        file.path.unlink()
    return result


def _unpack(
    file: ReceivedFile, target: Path, limits: ArchiveLimits, total: int
) -> tuple[list[ReceivedFile], int]:
    try:
        with zipfile.ZipFile(file.path) as archive:
            members = [m for m in archive.infolist() if not _skipped(m)]
            _check_members(file.name, members, limits, total)
            entries = []
            for index, member in enumerate(members):
                path = target / f"{index:06d}"
                total = _copy(archive, member, path, file.name, limits, total)
                entries.append(ReceivedFile(f"{file.name}:{member.filename}", path, True))
            return entries, total
    except zipfile.BadZipFile as error:
        raise BadRequestError(f"{file.name}: not a readable zip archive ({error})") from None


def _skipped(member: zipfile.ZipInfo) -> bool:
    parts = member.filename.replace("\\", "/").split("/")
    return member.is_dir() or any(part in IGNORED_PARTS for part in parts)


def _check_members(
    name: str, members: list[zipfile.ZipInfo], limits: ArchiveLimits, total: int
) -> None:
    if len(members) > limits.max_entries:
        raise BadRequestError(
            f"{name}: the archive holds {len(members)} files; the limit is {limits.max_entries}"
        )
    for member in members:
        _check_name(name, member)
        if member.flag_bits & 0x1:
            raise BadRequestError(f"{name}: entry {member.filename!r} is encrypted; refused")
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_FLOOR_BYTES and ratio > limits.max_ratio:
            raise BadRequestError(
                f"{name}: entry {member.filename!r} expands {ratio:.0f}-fold (limit "
                f"{limits.max_ratio:.0f}); refused as a possible zip bomb"
            )
    declared = total + sum(m.file_size for m in members)
    if declared > limits.max_total_bytes:
        raise BadRequestError(_over_total(name, limits))


def _check_name(name: str, member: zipfile.ZipInfo) -> None:
    entry = member.filename
    posix = entry.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise BadRequestError(f"{name}: entry {entry!r} has an absolute path; refused")
    if ".." in PurePosixPath(posix).parts:
        raise BadRequestError(f"{name}: entry {entry!r} points outside the archive (../); refused")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise BadRequestError(f"{name}: entry {entry!r} is a symbolic link; refused")
    if "\x00" in entry:
        raise BadRequestError(f"{name}: entry name holds a NUL byte; refused")


def _copy(
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    path: Path,
    name: str,
    limits: ArchiveLimits,
    total: int,
) -> int:
    """Copy one entry, counting real bytes (headers may lie about sizes)."""
    written = 0
    with archive.open(member) as source, path.open("wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > member.file_size or total + written > limits.max_total_bytes:
                raise BadRequestError(_over_total(name, limits))
            out.write(chunk)
    return total + written


def _over_total(name: str, limits: ArchiveLimits) -> str:
    return (
        f"{name}: the archive unpacks to more than {size_text(limits.max_total_bytes)} "
        "(MEDVERSE_MAX_ARCHIVE_BYTES); refused as a possible zip bomb"
    )
