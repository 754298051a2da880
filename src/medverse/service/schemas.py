"""What every resource's schemas share: identifier patterns and the one error body.

Each resource keeps its own bodies (``XCreate`` in, ``XPublic`` out; never patient data) in
its ``schemas`` module.
"""

from __future__ import annotations

from pydantic import BaseModel

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
ID_PATTERN = r"^[A-Za-z0-9-]{1,36}$"
USER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
# Free text in filters: anything printable (no control characters, which some databases refuse).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
MAX_ID = 2**63 - 1


class ErrorPublic(BaseModel):
    """Every error answer: one line saying what is wrong."""

    detail: str
