"""Silence pydicom's warnings and log records, which can quote element values (patient data)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_pydicom() -> Iterator[list[warnings.WarningMessage]]:
    """Keep pydicom's warnings and log records out of the output while the body runs.

    The warnings are recorded instead of printed, and the list is yielded (a reader can tell
    a truncated file from them). ``warnings.catch_warnings`` is process-wide, so
    long-running processes (the service) also filter pydicom's warnings once at start-up.
    """
    logger = logging.getLogger("pydicom")
    was_disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        logger.disabled = was_disabled
