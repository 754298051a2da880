"""Silence pydicom's warnings and log records, which can quote element values (patient data)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Keep pydicom's warnings and log records out of the output while the body runs.

    ``warnings.catch_warnings`` is process-wide, so long-running processes (the service) also
    filter pydicom's warnings once at start-up.
    """
    logger = logging.getLogger("pydicom")
    was_disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = was_disabled
