"""What every input (HL7 v2, FHIR, WFDB replay) becomes: a set of vital signs of one bed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from medverse.core.errors import InputError
from medverse.icu.parameters import Parameter


class Source(StrEnum):
    """Where a vital set came from."""

    HL7 = "hl7"
    FHIR = "fhir"
    WFDB = "wfdb"


@dataclass(slots=True)  # not frozen: one is built per message, and a frozen init costs 5x
class VitalSet:
    """Values of one bed observed at one time, in chart units (read-only by convention).

    Attributes:
        message_key: Key of the message that carried them (sender + control ID); a resend
            (same key, same ``observed_at``) is stored once.
        ward: Ward (HL7 PV1-3.1 point of care).
        bed: Bed within the ward (HL7 PV1-3.3).
        observed_at: Epoch seconds of the observation.
        values: Value per parameter (chart unit; oxygen 1/0, consciousness an `Acvpu` number).
        source: The input it came from.
        patient_id: The patient's identifier when sent (stored, never logged).
    """

    message_key: str
    ward: str
    bed: str
    observed_at: float
    values: dict[Parameter, float]
    source: Source
    patient_id: str | None = field(default=None, repr=False)
    bed_id: str = field(init=False, repr=False, compare=False)  # ``ward/bed``

    def __post_init__(self) -> None:
        self.bed_id = f"{self.ward}/{self.bed}"


def parse_hl7_time(text: str, what: str) -> float:
    """An HL7 v2 DTM (``YYYYMMDD[HH[MM[SS[.S+]]]][+/-ZZZZ]``) as epoch seconds (UTC without zone).

    Raises:
        InputError: Naming ``what`` if the text is not such a time.
    """
    body, zone = text.strip(), 0
    for sign in "+-":
        index = body.find(sign, 8)
        if index > 0:
            body, offset = body[:index], body[index + 1 :]
            if len(offset) != 4 or not offset.isdigit():
                raise InputError(f"{what} has a bad time zone offset: {text!r}")
            zone = (1 if sign == "+" else -1) * (int(offset[:2]) * 3600 + int(offset[2:]) * 60)
    whole, _, fraction = body.partition(".")
    if len(whole) not in (8, 10, 12, 14) or not whole.isdigit() or not (fraction or "0").isdigit():
        raise InputError(f"{what} is not an HL7 time (YYYYMMDDHHMM[SS]): {text!r}")
    parts = [int(whole[i : i + 2]) for i in range(4, len(whole), 2)] + [0, 0, 0]
    try:
        stamp = datetime(
            int(whole[:4]), parts[0], parts[1], parts[2], parts[3], parts[4], tzinfo=UTC
        )
    except ValueError as error:
        raise InputError(f"{what} is not a valid date and time: {text!r}") from error
    return stamp.timestamp() + (float(f"0.{fraction}") if fraction else 0.0) - zone
