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


@dataclass(frozen=True)
class VitalSet:
    """Values of one bed observed at one time, in chart units.

    Attributes:
        message_key: Unique key of the message that carried them (sender + control ID); a
            resend with the same key is stored once.
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

    @property
    def bed_id(self) -> str:
        """``ward/bed``: the bed's identifier across the system."""
        return f"{self.ward}/{self.bed}"


def parse_hl7_time(text: str, what: str) -> float:
    """An HL7 v2 DTM (``YYYYMMDDHHMM[SS[.S+]][+/-ZZZZ]``) as epoch seconds (UTC without zone).

    Raises:
        InputError: Naming ``what`` if the text is not such a time.
    """
    body, zone = text.strip(), ""
    for sign in "+-":
        if sign in body[8:]:
            index = body.rindex(sign)
            body, zone = body[:index], body[index:]
    whole, _, fraction = body.partition(".")
    formats = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    try:
        stamp = datetime.strptime(whole, formats[len(whole)]).replace(tzinfo=UTC)
        offset = (
            0
            if not zone
            else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        )
        seconds = float(f"0.{fraction}") if fraction else 0.0
    except (KeyError, ValueError) as error:
        raise InputError(f"{what} is not an HL7 time (YYYYMMDDHHMM[SS]): {text!r}") from error
    return stamp.timestamp() + seconds - offset
