"""Opt-in: keep freed large blocks in the process's heap on Linux/glibc, for reuse.

glibc serves blocks above its mmap threshold (128 KiB at first, raised as blocks are freed,
at most 32 MiB) with fresh mappings and returns them on free: each new slab, blend buffer or
resampled block of a CT then starts as untouched pages that the kernel faults in and zeroes
one at a time. ``MEDVERSE_KEEP_FREED_MEMORY=1`` keeps them (mmap threshold 1 GiB, trim
threshold 2 GiB). Measured on a 512x512x300 CT (float32 openvino, in-process, 2-core AVX2
EPYC, load ~3.4): 2.0-2.2 s of system time per study before, 0.3-0.5 s after, 12.0 -> 9.9
process CPU s. It is off by default because the peak resident size grows, and by how much
varies from run to run: +130 MiB in two ``segment --bundle`` runs on that CT, but 1.7-1.9 ->
2.7-2.9 GiB in two others (over the 2 GiB the CT must stay within); 512x512x1000: 2486 ->
2844 MiB. It is process-wide: in one process with MONAI's pipeline, that pipeline gains too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import cache

ENV_SWITCH = "MEDVERSE_KEEP_FREED_MEMORY"
"""Set to ``1`` to keep freed blocks (off by default)."""

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30
"""Blocks below 1 GiB come from the heap (and go back to it when freed)."""

TRIM_THRESHOLD = 2**31 - 1
"""Free memory at the heap's top kept, not returned to the system, up to 2 GiB."""


@cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks for reuse, if ``MEDVERSE_KEEP_FREED_MEMORY=1``.

    Returns:
        True if the settings were applied (asked, Linux with glibc), else False (unchanged).
    """
    if not sys.platform.startswith("linux") or os.environ.get(ENV_SWITCH, "0") != "1":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and done)
