"""HL7 v2 ORU^R01 vital signs in (parsed with python-hl7), ACK/NAK messages out."""

from __future__ import annotations

import math
import time
from enum import StrEnum
from typing import Any

import hl7

from medverse.core.errors import InputError
from medverse.icu.parameters import Acvpu, Parameter, lookup, to_chart_value
from medverse.icu.vitals import Source, VitalSet, parse_hl7_time

# OBX-11 result statuses whose value is a measurement (final, corrected, preliminary, result).
_USABLE_STATUS = frozenset({"", "F", "C", "P", "R", "S", "A"})


class AckCode(StrEnum):
    """MSA-1 acknowledgment codes (original mode)."""

    ACCEPT = "AA"
    ERROR = "AE"  # the message was read but its content cannot be used
    REJECT = "AR"  # not a message we take (type, version, processing ID) or not HL7 at all


class Hl7Error(InputError):
    """A message we cannot store; ``code`` says whether to answer AE or AR.

    Args:
        problem: The reason, sent back in MSA-3 / ERR.
        code: The NAK code.
    """

    def __init__(self, problem: str, code: AckCode = AckCode.ERROR) -> None:
        self.code = code
        super().__init__(problem)


def _part(segment: Any, field: int, component: int = 1) -> str:
    """Component ``component`` of field ``field`` of ``segment`` ("" where absent)."""
    try:
        value = segment(field)
    except IndexError:
        return ""
    try:
        return str(value(1)(component))
    except (IndexError, TypeError):
        return str(value) if component == 1 else ""


def parse_message(text: str) -> Any:
    """Parse HL7 v2 text with python-hl7.

    Raises:
        Hl7Error: (AR) if the text is not an HL7 v2 message.
    """
    try:
        message = hl7.parse(text.replace("\n", "\r").strip("\r"))
        message.segment("MSH")
    except (hl7.ParseException, KeyError, IndexError, ValueError) as error:
        raise Hl7Error(f"not an HL7 v2 message: {error}", AckCode.REJECT) from error
    return message


def read_oru(message: Any) -> VitalSet:
    """The vital signs of a parsed ORU^R01: bed from PV1-3, values from OBX (LOINC or MDC).

    Codes we do not read are skipped; an OBX whose status says it is not a result (OBX-11 X,
    D, I...) is skipped too.

    Raises:
        Hl7Error: Naming the segment and field that is wrong (AE), or AR for a message type
            other than ORU^R01.
    """
    msh = message.segment("MSH")
    kind = f"{_part(msh, 9, 1)}^{_part(msh, 9, 2)}"
    if kind != "ORU^R01":
        raise Hl7Error(f"MSH-9 message type {kind!r} is not ORU^R01", AckCode.REJECT)
    control_id = _part(msh, 10)
    if not control_id:
        raise Hl7Error("MSH-10 message control ID is empty")
    ward, bed = _location(message)
    values, observed = _observations(message)
    when = observed or _part(msh, 7)
    observed_at = parse_hl7_time(when, "OBX-14/MSH-7") if when else time.time()
    patient = _segment_or_none(message, "PID")
    return VitalSet(
        message_key=f"{_part(msh, 3)}|{_part(msh, 4)}|{control_id}",
        ward=ward,
        bed=bed,
        observed_at=observed_at,
        values=values,
        source=Source.HL7,
        patient_id=(_part(patient, 3) or None) if patient is not None else None,
    )


def _segment_or_none(message: Any, name: str) -> Any:
    try:
        return message.segment(name)
    except KeyError:
        return None


def _location(message: Any) -> tuple[str, str]:
    pv1 = _segment_or_none(message, "PV1")
    if pv1 is None:
        raise Hl7Error("PV1 segment missing: the bed (PV1-3) is needed")
    ward, bed = _part(pv1, 3, 1).strip(), _part(pv1, 3, 3).strip()
    if not ward or not bed:
        raise Hl7Error("PV1-3 must give the ward (component 1) and the bed (component 3)")
    return ward, bed


def _observations(message: Any) -> tuple[dict[Parameter, float], str]:
    values: dict[Parameter, float] = {}
    first_time = ""
    for index, obx in enumerate(message.segments("OBX") if _has(message, "OBX") else [], 1):
        code = lookup(_part(obx, 3, 3), _part(obx, 3, 1))
        if code is None or _part(obx, 11).strip().upper() not in _USABLE_STATUS:
            continue
        raw, unit = _part(obx, 5).strip(), _part(obx, 6, 1)
        where = f"OBX {index} ({_part(obx, 3, 1)})"
        if code.parameter == Parameter.CONSCIOUSNESS:
            try:
                value = float(Acvpu.from_letter(raw))
            except InputError as error:
                raise Hl7Error(f"{where} OBX-5: {error.problem}") from error
        else:
            try:
                number = float(raw)
            except ValueError as error:
                raise Hl7Error(f"{where} OBX-5 value {raw!r} is not a number") from error
            if not math.isfinite(number):
                raise Hl7Error(f"{where} OBX-5 value {raw!r} is not a finite number")
            try:
                value = to_chart_value(code, number, unit)
            except InputError as error:
                raise Hl7Error(f"{where} OBX-6: {error.problem}") from error
        values[code.parameter] = value
        first_time = first_time or _part(obx, 14)
    return values, first_time


def _has(message: Any, name: str) -> bool:
    return any(str(segment(0)) == name for segment in message)


def ack_for(message: Any, code: AckCode, reason: str = "") -> str:
    """The ACK (AA) or NAK (AE/AR with the reason in MSA-3) answering a parsed message."""
    ack = message.create_ack(ack_code=code.value)
    text = str(ack)
    if reason:
        text = text.rstrip("\r") + "|" + _escape(reason)
    return text + "\r"


def reject_unparsed(reason: str) -> str:
    """An AR for bytes that are not HL7 at all (no MSH to answer to)."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    msh = f"MSH|^~\\&|MEDVERSE|MEDVERSE|||{stamp}||ACK|{int(time.time() * 1e6)}|P|2.5"
    return f"{msh}\rMSA|AR||{_escape(reason)}\r"


def _escape(text: str) -> str:
    """HL7 escape sequences for the separators, so a reason cannot break the ACK."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")
