"""Folder index: each file's header outcome cached by its stat, read in parallel when many.

`medverse info` then `medverse convert --series UID` (or convert's own look at the series
before reading it) would read every header twice; the index keeps what a scan found per file,
keyed by the file's modification time, change time, size and inode, so a second scan only
``stat``s the files and re-reads the ones that changed. The index lives in the user's cache
folder (``~/.cache/medverse/dicom-index``), never in the scanned folder, one pickle per folder
(written atomically; the user's own files, so loading them is as safe as the folder itself).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TypeVar, cast

from medverse.io.atomic import write_bytes_atomic

T = TypeVar("T")

INDEX_VERSION = 2
"""Bumped whenever what a scan stores per file changes (older indexes are then ignored)."""
DEFAULT_INDEX_DIR = Path.home() / ".cache" / "medverse" / "dicom-index"
"""Where folder indexes are kept unless a caller names another folder."""
MAX_INDEXES = 256
"""Folder indexes kept; the least recently written go first."""
PARALLEL_MIN_FILES = 2000
"""Files to read before a scan spreads over processes: a header takes ~1-2 ms, starting the
processes tenths of a second (seconds from a threaded process, which needs a fork server)."""
SCAN_PROCESSES = min(8, os.cpu_count() or 1)
RACY_NS = 2_000_000_000
"""Files changed this recently are not indexed: file times tick coarsely (a few ms), so a
rewrite of the same size right after a scan could otherwise look unchanged (as git does)."""

_Stat = tuple[int, int, int, int]


def indexed_map(
    folder: Path,
    files: Sequence[Path],
    read_one: Callable[[Path], T],
    *,
    index_dir: Path | None = DEFAULT_INDEX_DIR,
    parallel_min: int = PARALLEL_MIN_FILES,
) -> list[T]:
    """``[read_one(f) for f in files]``, reusing the folder's index for unchanged files.

    Args:
        folder: The scanned folder (or file): names the index.
        files: The files, in the order wanted.
        read_one: Reads one file (a module-level function, so processes can run it).
        index_dir: Where indexes are kept; None reads everything and keeps no index.
        parallel_min: Read in worker processes when at least this many files changed.
    """
    stats = [_stat(f) for f in files]
    index_file = _index_file(folder, read_one, index_dir) if index_dir is not None else None
    old = _load(index_file) if index_file is not None else {}
    results: list[T | None] = []
    missing: list[int] = []
    for i, (file, stat) in enumerate(zip(files, stats)):
        hit = old.get(str(file))
        if hit is not None and stat is not None and hit[0] == stat:
            results.append(cast(T, hit[1]))
        else:
            results.append(None)
            missing.append(i)
    fresh = _read_all([files[i] for i in missing], read_one, parallel_min)
    for i, value in zip(missing, fresh):
        results[i] = value
    if index_file is not None and (missing or len(old) != len(files)):
        settled = time.time_ns() - RACY_NS
        entries: dict[str, tuple[_Stat, object]] = {
            str(f): (s, r)
            for f, s, r in zip(files, stats, results)
            if s is not None and max(s[0], s[1]) < settled
        }
        _save(index_file, entries)
    return cast(list[T], results)


def _read_all(files: list[Path], read_one: Callable[[Path], T], parallel_min: int) -> list[T]:
    if len(files) < max(parallel_min, 2) or SCAN_PROCESSES < 2:
        return [read_one(f) for f in files]
    # fork is cheap but unsafe when other threads (a server, torch) may hold locks
    method = "fork" if threading.active_count() == 1 else "forkserver"
    context = multiprocessing.get_context(method)
    chunk = max(16, len(files) // (SCAN_PROCESSES * 4))
    try:
        with ProcessPoolExecutor(SCAN_PROCESSES, mp_context=context) as pool:
            return list(pool.map(read_one, files, chunksize=chunk))
    except (BrokenProcessPool, OSError):  # no processes here (e.g. a `python -` main): serial
        return [read_one(f) for f in files]


def _stat(file: Path) -> _Stat | None:
    try:
        st = file.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _index_file(folder: Path, read_one: Callable[[Path], object], index_dir: Path) -> Path:
    """One index per folder and reader (what it stores is what ``read_one`` returns)."""
    name = f"{folder.absolute()}|{read_one.__module__}.{read_one.__qualname__}"
    key = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
    return index_dir / f"{key}.pickle"


_MEMORY: dict[Path, tuple[_Stat, dict[str, tuple[_Stat, object]]]] = {}
"""Indexes this process read or wrote, by index file, with that file's stat (no re-load)."""


def _load(index_file: Path) -> dict[str, tuple[_Stat, object]]:
    stat = _stat(index_file)
    remembered = _MEMORY.get(index_file)
    if stat is not None and remembered is not None and remembered[0] == stat:
        return remembered[1]
    try:
        with index_file.open("rb") as handle:
            version, entries = pickle.load(handle)  # the user's own cache
    except (OSError, EOFError, ValueError, TypeError, AttributeError, ImportError):
        return {}
    except pickle.UnpicklingError:  # a damaged index: scan as if there were none
        return {}
    return entries if version == INDEX_VERSION and isinstance(entries, dict) else {}


def _save(index_file: Path, entries: dict[str, tuple[_Stat, object]]) -> None:
    """Write the index; a cache that cannot be written only costs the next scan its speed."""
    try:
        index_file.parent.mkdir(parents=True, exist_ok=True)
        new = not index_file.exists()
        data = pickle.dumps((INDEX_VERSION, entries), protocol=pickle.HIGHEST_PROTOCOL)
        write_bytes_atomic(index_file, data)
        if new:
            _prune(index_file.parent)
    except OSError:
        return
    stat = _stat(index_file)
    if stat is not None:
        if len(_MEMORY) >= 32:
            _MEMORY.clear()
        _MEMORY[index_file] = (stat, entries)


def _prune(index_dir: Path) -> None:
    """Drop the least recently written indexes past :data:`MAX_INDEXES`.

    Listing the folder is cheap; the files are only stat'ed when there are too many.
    """
    names = [entry for entry in os.scandir(index_dir) if entry.name.endswith(".pickle")]
    if len(names) <= MAX_INDEXES:
        return
    names.sort(key=lambda entry: entry.stat().st_mtime, reverse=True)
    for stale in names[MAX_INDEXES:]:
        Path(stale.path).unlink(missing_ok=True)
