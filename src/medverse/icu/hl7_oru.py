"""HL7 v2 ORU^R01 vital signs in, ACK/NAK messages out.

Messages are tokenised into segments, fields and components. python-hl7 tokenises every
message that uses escape sequences, repetitions or non-default delimiters; a message with the
default delimiters and none of those is split with ``str.split`` (a tenth of the cost), which
property tests hold to the library's result. One reader then interprets either.
"""

from __future__ import annotations

import math
import re
import time
from enum import StrEnum
from typing import Any

import hl7

from medverse.core.errors import InputError
from medverse.icu.parameters import Acvpu, Code, Parameter, lookup, to_chart_value
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


Segment = list[str]  # fields (MSH-n and XXX-n at index n), components joined by "^"
_DEFAULT_MSH = "MSH|^~\\&|"
_SPECIAL = re.compile(r"[\\|^&~\r\n]")


class Hl7Message:
    """A tokenised message: segments by name, in order.

    Args:
        segments: ``(name, fields)`` pairs in message order.
    """

    def __init__(self, segments: list[tuple[str, Segment]]) -> None:
        self.by_name: dict[str, list[Segment]] = {}
        for name, fields in segments:
            self.by_name.setdefault(name, []).append(fields)

    def first(self, name: str) -> Segment | None:
        """The first segment called ``name``."""
        found = self.by_name.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[Segment]:
        """Every segment called ``name``."""
        return self.by_name.get(name, [])


def _part(segment: Segment, field: int, component: int = 1) -> str:
    """Component ``component`` of field ``field`` ("" where absent)."""
    if field >= len(segment):
        return ""
    if component == 1:
        return segment[field].partition("^")[0]
    components = segment[field].split("^")
    return components[component - 1] if component <= len(components) else ""


def _split_plain(text: str) -> Hl7Message:
    segments: list[tuple[str, Segment]] = []
    for line in text.split("\r"):
        if not line:
            continue
        fields = line.split("|")
        if fields[0] == "MSH":
            fields.insert(1, "|")
        segments.append((fields[0], fields))
    return Hl7Message(segments)


def _library_fields(segment: Any) -> Segment:
    fields: Segment = []
    for index in range(len(segment)):
        value = segment(index) if index else segment[0]
        try:
            repetition = value(1)
        except (IndexError, TypeError):
            fields.append(str(value))
            continue
        if isinstance(repetition, str):
            fields.append(str(value))
        else:
            fields.append("^".join(str(repetition(c)) for c in range(1, len(repetition) + 1)))
    return fields


def _split_with_library(text: str) -> Hl7Message:
    message = hl7.parse(text)
    message.segment("MSH")
    return Hl7Message([(str(segment[0]), _library_fields(segment)) for segment in message])


def is_plain(text: str) -> bool:
    """Default delimiters and no escape sequence or repetition after MSH-2."""
    return text.startswith(_DEFAULT_MSH) and "\\" not in text[9:] and "~" not in text[9:]


def parse_message(text: str, *, use_library: bool = False) -> Hl7Message:
    """Tokenise HL7 v2 text (python-hl7 unless the message is plain, see the module doc).

    Args:
        text: The message; segments end with CR (LF is accepted too).
        use_library: Always tokenise with python-hl7.

    Raises:
        Hl7Error: (AR) if the text is not an HL7 v2 message.
    """
    text = text.replace("\n", "\r").strip("\r")
    try:
        if not use_library and is_plain(text):
            return _split_plain(text)
        return _split_with_library(text)
    except (hl7.ParseException, KeyError, IndexError, ValueError) as error:
        raise Hl7Error(f"not an HL7 v2 message: {error}", AckCode.REJECT) from error


def read_oru(message: Hl7Message) -> VitalSet:
    """The vital signs of a parsed ORU^R01: bed from PV1-3, values from OBX (LOINC or MDC).

    Codes we do not read are skipped; an OBX whose status says it is not a result (OBX-11 X,
    D, I...) is skipped too.

    Raises:
        Hl7Error: Naming the segment and field that is wrong (AE), or AR for a message type
            other than ORU^R01.
    """
    msh = message.first("MSH")
    if msh is None:
        raise Hl7Error("no MSH segment", AckCode.REJECT)
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
    patient = message.first("PID")
    return VitalSet(
        message_key=f"{_part(msh, 3)}|{_part(msh, 4)}|{control_id}",
        ward=ward,
        bed=bed,
        observed_at=observed_at,
        values=values,
        source=Source.HL7,
        patient_id=(_part(patient, 3) or None) if patient is not None else None,
    )


def _location(message: Hl7Message) -> tuple[str, str]:
    pv1 = message.first("PV1")
    if pv1 is None:
        raise Hl7Error("PV1 segment missing: the bed (PV1-3) is needed")
    ward, bed = _part(pv1, 3, 1).strip(), _part(pv1, 3, 3).strip()
    if not ward or not bed:
        raise Hl7Error("PV1-3 must give the ward (component 1) and the bed (component 3)")
    return ward, bed


def _observations(message: Hl7Message) -> tuple[dict[Parameter, float], str]:
    values: dict[Parameter, float] = {}
    first_time = ""
    for index, obx in enumerate(message.all("OBX"), 1):
        identifier = (_part(obx, 3, 1), _part(obx, 3, 3))
        code = lookup(identifier[1], identifier[0])
        if code is None or _part(obx, 11).strip().upper() not in _USABLE_STATUS:
            continue
        values[code.parameter] = _value(code, _part(obx, 5).strip(), _part(obx, 6), index, obx)
        first_time = first_time or _part(obx, 14)
    return values, first_time


def _value(code: Code, raw: str, unit: str, index: int, obx: Segment) -> float:
    """OBX-5 in the chart's unit; errors name the OBX (only built when there is one)."""
    if code.parameter == Parameter.CONSCIOUSNESS:
        try:
            return float(Acvpu.from_letter(raw))
        except InputError as error:
            raise Hl7Error(f"{_where(index, obx)} OBX-5: {error.problem}") from error
    try:
        number = float(raw)
    except ValueError as error:
        raise Hl7Error(f"{_where(index, obx)} OBX-5 value {raw!r} is not a number") from error
    if not math.isfinite(number):
        raise Hl7Error(f"{_where(index, obx)} OBX-5 value {raw!r} is not a finite number")
    try:
        return to_chart_value(code, number, unit)
    except InputError as error:
        raise Hl7Error(f"{_where(index, obx)} OBX-6: {error.problem}") from error


def _where(index: int, obx: Segment) -> str:
    return f"OBX {index} ({_part(obx, 3, 1)})"


def ack_for(message: Hl7Message, code: AckCode, reason: str = "") -> str:
    """The ACK (AA) or NAK (AE/AR, the reason in MSA-3) answering a message.

    Laid out as python-hl7's ``create_ack``: sender and receiver swapped, processing ID and
    version kept.
    """
    return ack_for_msh(message.first("MSH") or [""] * 13, code, reason)


def ack_for_msh(msh: Segment, code: AckCode, reason: str = "") -> str:
    """`ack_for` from the answered message's MSH fields (MSH-n at index n)."""
    return acks_for_msh([msh], code, reason)[0].decode("utf-8")[1:-2]


def acks_for_msh(mshs: list[Segment], code: AckCode, reason: str = "") -> list[bytes]:
    """`ack_for_msh` of each MSH, MLLP-framed, built in one pass (one time stamp for all).

    Each ACK's own control ID (MSH-10) is unique in the process: nanoseconds since the epoch
    when the batch was built, plus its place in the batch, in hex.
    """
    stamp, first_id = _stamp(), time.time_ns()
    end = f"|{_escape(reason)}\r\x1c\r" if reason else "\r\x1c\r"
    middle = f"{code.value}|"
    out: list[bytes] = []
    for index, msh in enumerate(mshs):
        if len(msh) < 13:
            msh = msh + [""] * (13 - len(msh))
        key = (msh[3], msh[4], msh[5], msh[6], msh[9], msh[11], msh[12])
        parts = _ack_parts.get(key) or _remember_layout(key, msh)
        control = msh[10].partition("^")[0]
        text = (
            f"\x0b{parts[0]}{stamp}{parts[1]}{first_id + index:x}{parts[2]}{middle}"
            f"{_escape(control) if _SPECIAL.search(control) else control}{end}"
        )
        out.append(text.encode("utf-8"))
    return out


def _remember_layout(key: tuple[str, ...], msh: Segment) -> tuple[str, str, str]:
    parts = _ack_layout(msh)
    if len(_ack_parts) >= 1024:  # one entry per sender set-up; bounded all the same
        _ack_parts.clear()
    _ack_parts[key] = parts
    return parts


_ack_parts: dict[tuple[str, ...], tuple[str, str, str]] = {}


def _ack_layout(msh: Segment) -> tuple[str, str, str]:
    """The ACK text around its time, its control ID and its code, for one sender's MSH."""
    first = [field.partition("^")[0] for field in msh[3:13]]  # MSH-3 .. MSH-12
    return (
        f"MSH|^~\\&|{first[2]}|{first[3]}|{first[0]}|{first[1]}|",
        f"||ACK^{_part(msh, 9, 2)}^ACK|",
        f"|{first[8]}|{first[9]}\rMSA|",
    )


_last_stamp: list[Any] = [-1, ""]  # (epoch second, its HL7 DTM): one strftime per second


def _stamp() -> str:
    now = int(time.time())
    if now != _last_stamp[0]:
        _last_stamp[:] = [now, time.strftime("%Y%m%d%H%M%S", time.gmtime(now))]
    return str(_last_stamp[1])


def reject_unparsed(reason: str) -> str:
    """An AR for bytes that are not HL7 at all (no MSH to answer to)."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    msh = f"MSH|^~\\&|MEDVERSE|MEDVERSE|||{stamp}||ACK|{int(time.time() * 1e6)}|P|2.5"
    return f"{msh}\rMSA|AR||{_escape(reason)}\r"


def _escape(text: str) -> str:
    """HL7 escape sequences for the separators, so a reason cannot break the ACK."""
    if _SPECIAL.search(text) is None:
        return text
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    return out.replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")
