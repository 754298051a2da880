"""The listener's hot path: a plain ORU^R01 read in one pass, or None to take the full path.

A message with the default delimiters and no escapes or repetitions (`hl7_oru.is_plain`) is
read field by field with ``str.split`` and small caches (parameter and unit conversion per
OBX-3/OBX-6/OBX-11 spelling, epoch seconds per HL7 time). Anything it does not take as it
comes (another message type, a bad value, unit or time, a missing bed) returns None, and the
caller reads the message with `hl7_oru.parse_message` / `hl7_oru.read_oru`, which name the
problem in the NAK. Tests hold this reader to that one: the same `VitalSet` for every message
it accepts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from medverse.core.errors import InputError
from medverse.icu.hl7_oru import Segment, is_plain
from medverse.icu.parameters import Acvpu, Code, Parameter, _same, lookup
from medverse.icu.vitals import Source, VitalSet, parse_hl7_time

_USABLE_STATUS = frozenset({"", "F", "C", "P", "R", "S", "A"})
_CACHE_LIMIT = 4096  # spellings and times kept; cleared when full (bounded memory)
_SKIP: tuple[None, None] = (None, None)

Reading = tuple[Parameter, Callable[[float], float] | None] | tuple[None, None]
_readings: dict[tuple[str, str, str], Reading] = {}
_times: dict[str, float] = {}
_letters: dict[str, float] = {}
Read = tuple[Parameter | None, float, str]  # parameter (None: not read), chart value, OBX-14
_SKIPPED: Read = (None, 0.0, "")
_LINES_LIMIT = 16_384  # OBX lines kept (a few MB); cleared when full
_lines: dict[str, Read] = {}


def _first(field: str) -> str:
    return field.partition("^")[0]


def _reading(field3: str, field6: str, field11: str) -> Reading | None:
    """(parameter, unit conversion) of an OBX-3 code, OBX-6 unit and OBX-11 status.

    `_SKIP` for a code we do not read or a status that is not a result, conversion None for
    consciousness (a letter), None when the unit is not one the parameter is accepted in.
    """
    parts = field3.split("^")
    code = lookup(parts[2] if len(parts) > 2 else "", parts[0])
    if code is None or not _usable(field11):
        reading: Reading = _SKIP
    elif code.parameter == Parameter.CONSCIOUSNESS:
        reading = (code.parameter, None)
    else:
        convert = _conversion(code, _first(field6))
        if convert is None:
            return None
        reading = (code.parameter, convert)
    if len(_readings) >= _CACHE_LIMIT:
        _readings.clear()
    _readings[(field3, field6, field11)] = reading
    return reading


def _conversion(code: Code, unit: str) -> Callable[[float], float] | None:
    spelled = unit.strip()
    for accepted in code.units:
        if spelled in accepted.codes:
            return accepted.to_chart
    return None


def _epoch(text: str) -> float:
    """`parse_hl7_time` with a cache (1 Hz streams repeat each second across beds)."""
    found = _times.get(text)
    if found is None:
        found = parse_hl7_time(text, "OBX-14/MSH-7")
        if len(_times) >= _CACHE_LIMIT:
            _times.clear()
        _times[text] = found
    return found


def _letter(raw: str) -> float:
    """ACVPU letter as its number (cached; raises InputError for anything else)."""
    found = _letters.get(raw)
    if found is None:
        found = float(Acvpu.from_letter(_first(raw).strip()))
        if len(_letters) < _CACHE_LIMIT:
            _letters[raw] = found
    return found


def _usable(status: str) -> bool:
    return status in _USABLE_STATUS or _first(status).strip().upper() in _USABLE_STATUS


_PAD = [""] * 15


def _obx(line: str) -> Read | None:
    """(parameter, chart value, first component of OBX-14) of one OBX line.

    `_SKIPPED` for a code or status not read, None to defer; raises ValueError/InputError on
    a value the full reader names in its NAK.
    """
    obx = line.split("|")  # OBX-n at index n
    if len(obx) < 15:
        obx += _PAD[len(obx) :]  # absent fields read as empty, as in hl7_oru
    key = (obx[3], obx[6], obx[11])
    reading = _readings.get(key) or _reading(*key)
    if reading is None:
        return None
    parameter, convert = reading
    if parameter is None:
        return _SKIPPED
    raw = obx[5]
    if convert is None:
        value = _letter(raw)
    else:
        number = float(raw.partition("^")[0] if "^" in raw else raw)  # float() strips
        if not math.isfinite(number):
            raise ValueError(raw)
        value = number if convert is _same else convert(number)
    when = obx[14]
    return parameter, value, (when.partition("^")[0] if "^" in when else when)


def _values(obx_lines: list[str]) -> tuple[dict[Parameter, float], str] | None:
    """Values by parameter and the first used OBX-14; None to defer.

    An OBX line read before is taken from `_lines` (at 1 Hz across many beds most lines
    repeat within the second: same code, value, unit, status and time). Raises
    ValueError/InputError on a value the full reader names in its NAK.
    """
    values: dict[Parameter, float] = {}
    observed = ""
    for line in obx_lines:
        read = _lines.get(line)
        if read is None:
            read = _obx(line)
            if read is None:
                return None
            if len(_lines) >= _LINES_LIMIT:
                _lines.clear()
            _lines[line] = read
        parameter, value, when = read
        if parameter is None:
            continue
        values[parameter] = value
        if not observed:
            observed = when
    return values, observed


def _segments(lines: list[str]) -> tuple[Segment | None, Segment | None, list[str]]:
    """The first PID and PV1 (split) and every OBX line, of the lines after MSH."""
    pid: Segment | None = None
    pv1: Segment | None = None
    obxs: list[str] = []
    for line in lines:
        name = line[:4]
        if name == "OBX|":
            obxs.append(line)
        elif name == "PV1|" or line == "PV1":
            if pv1 is None:
                pv1 = line.split("|")
        elif (name == "PID|" or line == "PID") and pid is None:
            pid = line.split("|")
    return pid, pv1, obxs


def read_plain(text: str) -> tuple[VitalSet, Segment] | None:
    """The vital set and MSH fields of a plain, valid ORU^R01, or None for the full path.

    Args:
        text: The decoded message (segments end with CR; LF accepted).
    """
    if "\n" in text:
        text = text.replace("\n", "\r")
    text = text.strip("\r")
    if not is_plain(text):
        return None
    lines = text.split("\r")
    msh = lines[0].split("|")
    msh.insert(1, "|")
    pid, pv1, obx_lines = _segments(lines[1:])
    if len(msh) < 11 or pv1 is None or len(pv1) < 4:
        return None
    kind, control_id = msh[9].split("^"), _first(msh[10])
    location = pv1[3].split("^")
    ward, bed = location[0].strip(), (location[2].strip() if len(location) > 2 else "")
    if kind[:2] != ["ORU", "R01"] or not control_id or not ward or not bed:
        return None
    try:
        found = _values(obx_lines)
        if found is None:
            return None
        values, observed = found
        when = observed or _first(msh[7])
        observed_at = _epoch(when) if when else time.time()
    except (ValueError, InputError):
        return None
    patient = _first(pid[3]) if pid is not None and len(pid) > 3 else ""
    key = f"{_first(msh[3])}|{_first(msh[4])}|{control_id}"
    return VitalSet(key, ward, bed, observed_at, values, Source.HL7, patient or None), msh
