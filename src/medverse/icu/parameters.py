"""The seven NEWS2 parameters, their codes (LOINC, ISO/IEEE 11073 MDC), units and limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from medverse.core.errors import InputError


class Parameter(StrEnum):
    """A NEWS2 parameter; the column order of every per-bed value array."""

    RESPIRATION_RATE = "respiration_rate"
    SPO2 = "spo2"
    SUPPLEMENTAL_OXYGEN = "supplemental_oxygen"
    SYSTOLIC_BP = "systolic_bp"
    PULSE = "pulse"
    CONSCIOUSNESS = "consciousness"
    TEMPERATURE = "temperature"


# Column index of each parameter in (beds x parameters) arrays.
PARAMETERS: tuple[Parameter, ...] = tuple(Parameter)
COLUMN: dict[Parameter, int] = {p: i for i, p in enumerate(PARAMETERS)}


class Acvpu(IntEnum):
    """Level of consciousness (ACVPU); the integer is how it is stored as a number."""

    ALERT = 0
    NEW_CONFUSION = 1
    VOICE = 2
    PAIN = 3
    UNRESPONSIVE = 4

    @classmethod
    def from_letter(cls, letter: str) -> Acvpu:
        """``"A"``, ``"C"``, ``"V"``, ``"P"`` or ``"U"`` (case-insensitive) to the level.

        Raises:
            InputError: For any other text.
        """
        found = _ACVPU_LETTERS.get(letter.strip().upper()[:1])
        if found is None:
            raise InputError(f"consciousness must be one of A, C, V, P, U (ACVPU), not {letter!r}")
        return found


_ACVPU_LETTERS = {"A": Acvpu.ALERT, "C": Acvpu.NEW_CONFUSION, "V": Acvpu.VOICE}
_ACVPU_LETTERS |= {"P": Acvpu.PAIN, "U": Acvpu.UNRESPONSIVE}


class SpO2Scale(StrEnum):
    """NEWS2 SpO2 scale: 2 only for a prescribed 88-92 % target (hypercapnic failure)."""

    SCALE_1 = "1"
    SCALE_2 = "2"


@dataclass(frozen=True)
class Unit:
    """A unit a parameter may arrive in and how to turn it into the chart's unit.

    Attributes:
        codes: Spellings seen in HL7 OBX-6 / FHIR ``valueQuantity`` (UCUM first).
        to_chart: Converts a value in this unit to the chart's unit.
    """

    codes: tuple[str, ...]
    to_chart: Callable[[float], float]


def _same(value: float) -> float:
    return value


def _fahrenheit(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def _fio2_on_oxygen(value: float) -> float:
    # FiO2 as a fraction (0.21) or a percentage (21): above room air means supplemental oxygen.
    percent = value * 100.0 if value <= 1.0 else value
    return 1.0 if percent > 21.0 else 0.0


def _flow_on_oxygen(value: float) -> float:
    return 1.0 if value > 0.0 else 0.0


_PER_MIN = Unit(("/min", "{breaths}/min", "{beats}/min", "bpm", "1/min", "min-1", "/mn"), _same)
_PERCENT = Unit(("%", "percent"), _same)
_MMHG = Unit(("mm[Hg]", "mmHg", "mm Hg", "mmhg"), _same)
_CELSIUS = Unit(("Cel", "degC", "°C", "C", "cel"), _same)
_FAHRENHEIT = Unit(("[degF]", "degF", "°F", "F"), _fahrenheit)
_FLAG = Unit(("", "{boolean}", "1"), _same)
_FLOW = Unit(("L/min", "l/min", "L/mn"), _flow_on_oxygen)
_FIO2 = Unit(("%{FiO2}", "{fraction}"), _fio2_on_oxygen)
_ACVPU_UNIT = Unit(("", "{ACVPU}"), _same)


@dataclass(frozen=True)
class Code:
    """One observation code we read.

    Attributes:
        parameter: The NEWS2 parameter it measures.
        units: Units accepted for it (the first is the chart's own).
    """

    parameter: Parameter
    units: tuple[Unit, ...]


# LOINC codes (system "LN" in HL7 v2, http://loinc.org in FHIR).
LOINC: dict[str, Code] = {
    "9279-1": Code(Parameter.RESPIRATION_RATE, (_PER_MIN,)),
    "59408-5": Code(Parameter.SPO2, (_PERCENT,)),
    "2708-6": Code(Parameter.SPO2, (_PERCENT,)),
    "8480-6": Code(Parameter.SYSTOLIC_BP, (_MMHG,)),
    "76534-7": Code(Parameter.SYSTOLIC_BP, (_MMHG,)),
    "76215-3": Code(Parameter.SYSTOLIC_BP, (_MMHG,)),
    "8867-4": Code(Parameter.PULSE, (_PER_MIN,)),
    "8889-8": Code(Parameter.PULSE, (_PER_MIN,)),
    "8310-5": Code(Parameter.TEMPERATURE, (_CELSIUS, _FAHRENHEIT)),
    "8331-1": Code(Parameter.TEMPERATURE, (_CELSIUS, _FAHRENHEIT)),
    "8328-7": Code(Parameter.TEMPERATURE, (_CELSIUS, _FAHRENHEIT)),
    "80288-4": Code(Parameter.CONSCIOUSNESS, (_ACVPU_UNIT,)),
    "3151-8": Code(Parameter.SUPPLEMENTAL_OXYGEN, (_FLOW,)),
    "3150-0": Code(Parameter.SUPPLEMENTAL_OXYGEN, (_FIO2, _PERCENT)),
}

# ISO/IEEE 11073-10101 MDC codes (system "MDC"), as bedside monitors send them.
MDC: dict[str, Code] = {
    "151562": Code(Parameter.RESPIRATION_RATE, (_PER_MIN,)),  # MDC_RESP_RATE
    "150456": Code(Parameter.SPO2, (_PERCENT,)),  # MDC_PULS_OXIM_SAT_O2
    "150021": Code(Parameter.SYSTOLIC_BP, (_MMHG,)),  # MDC_PRESS_BLD_NONINV_SYS
    "150017": Code(Parameter.SYSTOLIC_BP, (_MMHG,)),  # MDC_PRESS_BLD_ART_SYS
    "150033": Code(Parameter.SYSTOLIC_BP, (_MMHG,)),  # MDC_PRESS_BLD_ART_ABP_SYS
    "147842": Code(Parameter.PULSE, (_PER_MIN,)),  # MDC_ECG_HEART_RATE
    "149530": Code(Parameter.PULSE, (_PER_MIN,)),  # MDC_PULS_OXIM_PULS_RATE
    "150344": Code(Parameter.TEMPERATURE, (_CELSIUS, _FAHRENHEIT)),  # MDC_TEMP
    "150364": Code(Parameter.TEMPERATURE, (_CELSIUS, _FAHRENHEIT)),  # MDC_TEMP_BODY
}

SYSTEMS: dict[str, dict[str, Code]] = {
    "LN": LOINC,
    "LOINC": LOINC,
    "http://loinc.org": LOINC,
    "MDC": MDC,
    "urn:iso:std:iso:11073:10101": MDC,
}


def lookup(system: str, code: str) -> Code | None:
    """The parameter a code measures, or None for a code we do not read.

    Args:
        system: ``LN``/``http://loinc.org`` or ``MDC``/``urn:iso:std:iso:11073:10101``.
        code: The code within that system.
    """
    table = SYSTEMS.get(system.strip())
    return None if table is None else table.get(code.strip())


def to_chart_value(code: Code, value: float, unit: str) -> float:
    """Convert ``value`` given in ``unit`` to the chart's unit for ``code``'s parameter.

    Raises:
        InputError: If the unit is not one this parameter may be sent in.
    """
    for accepted in code.units:
        if unit.strip() in accepted.codes:
            return accepted.to_chart(value)
    allowed = ", ".join(repr(u) for accepted in code.units for u in accepted.codes if u)
    raise InputError(
        f"unit {unit!r} is not accepted for {code.parameter.value} (accepted: {allowed})"
    )


@dataclass(frozen=True)
class Limits:
    """Values outside these are physiologically impossible: suppressed, not scored.

    Attributes:
        low: Lowest possible value (chart unit).
        high: Highest possible value (chart unit).
    """

    low: float
    high: float


PLAUSIBLE: dict[Parameter, Limits] = {
    Parameter.RESPIRATION_RATE: Limits(0.0, 80.0),
    Parameter.SPO2: Limits(40.0, 100.0),
    Parameter.SUPPLEMENTAL_OXYGEN: Limits(0.0, 1.0),
    Parameter.SYSTOLIC_BP: Limits(30.0, 300.0),
    Parameter.PULSE: Limits(15.0, 300.0),
    Parameter.CONSCIOUSNESS: Limits(0.0, 4.0),
    Parameter.TEMPERATURE: Limits(25.0, 45.0),
}
