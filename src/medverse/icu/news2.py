"""NEWS2 exactly as the RCP 2017 chart: parameter bands, aggregate, risk and clinical response.

Pure functions, no I/O. The bands are data (`BANDS`), read by these scalar functions and by the
vectorised scorer in `news2_batch`, so there is one chart in the code.

Resolution: the chart is integer-banded (temperature to 0.1 °C) and does not say how to score a
value between two bands (a respiration rate of 20.5/min). We round to the chart's resolution,
half away from zero for positive values (20.5 -> 21 -> 2 points; 38.05 °C -> 38.1 -> 1 point),
then read the band. Times are seconds since the epoch (float).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from medverse.icu.parameters import PARAMETERS, Acvpu, Parameter, SpO2Scale

INF = math.inf
# Added before flooring so 38.05 (stored as 38.04999...) rounds to 38.1 as a reader would.
_NUDGE = 1e-7


@dataclass(frozen=True)
class Bands:
    """Score bands of one parameter, lowest first.

    Attributes:
        uppers: Inclusive upper bound of each band in chart units (the last is +inf).
        scores: Points of each band.
        decimals: Chart resolution (0: whole numbers, 1: tenths).
    """

    uppers: tuple[float, ...]
    scores: tuple[int, ...]
    decimals: int = 0

    @property
    def upper_units(self) -> tuple[float, ...]:
        """The upper bounds in units of ``10**-decimals`` (whole numbers, and +inf)."""
        return tuple(u if u == INF else round(u * 10**self.decimals) for u in self.uppers)

    def score(self, value: float) -> int:
        """Points for ``value`` (finite, chart unit)."""
        units = to_chart_units(value, self.decimals)
        for upper, points in zip(self.upper_units, self.scores):
            if units <= upper:
                return points
        return self.scores[-1]


def to_chart_units(value: float, decimals: int) -> float:
    """``value`` rounded half-up to the chart resolution, in units of ``10**-decimals``."""
    return math.floor(value * 10**decimals + 0.5 + _NUDGE)


# RCP 2017 NEWS2 Chart 1 (the implementation's copy; the tests type their own from the chart).
RESPIRATION_RATE = Bands((8, 11, 20, 24, INF), (3, 1, 0, 2, 3))
SPO2_SCALE_1 = Bands((91, 93, 95, INF), (3, 2, 1, 0))
SPO2_SCALE_2_AIR = Bands((83, 85, 87, INF), (3, 2, 1, 0))
SPO2_SCALE_2_OXYGEN = Bands((83, 85, 87, 92, 94, 96, INF), (3, 2, 1, 0, 1, 2, 3))
SYSTOLIC_BP = Bands((90, 100, 110, 219, INF), (3, 2, 1, 0, 3))
PULSE = Bands((40, 50, 90, 110, 130, INF), (3, 1, 0, 1, 2, 3))
TEMPERATURE = Bands((35.0, 36.0, 38.0, 39.0, INF), (3, 1, 0, 1, 2), decimals=1)
OXYGEN_POINTS = 2  # "Air or oxygen?": oxygen scores 2, air 0
CONSCIOUSNESS_POINTS = 3  # C, V, P or U (new confusion counts) scores 3, alert 0

BANDS: dict[Parameter, Bands] = {
    Parameter.RESPIRATION_RATE: RESPIRATION_RATE,
    Parameter.SYSTOLIC_BP: SYSTOLIC_BP,
    Parameter.PULSE: PULSE,
    Parameter.TEMPERATURE: TEMPERATURE,
}


def spo2_bands(scale: SpO2Scale, on_oxygen: bool) -> Bands:
    """The SpO2 bands for ``scale`` (scale 2 reads oxygen above 92 %)."""
    if scale == SpO2Scale.SCALE_1:
        return SPO2_SCALE_1
    return SPO2_SCALE_2_OXYGEN if on_oxygen else SPO2_SCALE_2_AIR


def score_spo2(value: float, scale: SpO2Scale, on_oxygen: bool) -> int:
    """Points for an SpO2 (%) on ``scale``; on scale 2, >= 93 % scores 0 on air only."""
    return spo2_bands(scale, on_oxygen).score(value)


def score_oxygen(on_oxygen: bool) -> int:
    """Points for "air or oxygen?": 2 on supplemental oxygen, 0 on air."""
    return OXYGEN_POINTS if on_oxygen else 0


def score_consciousness(level: Acvpu) -> int:
    """Points for ACVPU: alert 0; new confusion, voice, pain or unresponsive 3."""
    return 0 if level == Acvpu.ALERT else CONSCIOUSNESS_POINTS


def score_parameter(
    parameter: Parameter, value: float, *, scale: SpO2Scale, on_oxygen: bool = False
) -> int:
    """Points of one parameter's value (chart unit; oxygen 1/0, consciousness an `Acvpu`).

    Args:
        parameter: Which parameter ``value`` is.
        value: The value in the chart's unit.
        scale: The patient's SpO2 scale.
        on_oxygen: Whether the patient is on supplemental oxygen (read by SpO2 scale 2).
    """
    if parameter == Parameter.SPO2:
        return score_spo2(value, scale, on_oxygen)
    if parameter == Parameter.SUPPLEMENTAL_OXYGEN:
        return score_oxygen(value >= 0.5)
    if parameter == Parameter.CONSCIOUSNESS:
        return score_consciousness(Acvpu(int(value)))
    return BANDS[parameter].score(value)


class Risk(StrEnum):
    """Clinical risk (RCP 2017 Chart 3)."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


class ResponseLevel(StrEnum):
    """Which row of the clinical response chart (RCP 2017 Chart 4) applies."""

    ROUTINE = "routine"  # aggregate 0
    WARD = "ward"  # aggregate 1-4
    URGENT_WARD = "urgent-ward"  # a single parameter scoring 3 (aggregate below 5)
    URGENT = "urgent"  # aggregate 5-6: the key threshold for urgent response
    EMERGENCY = "emergency"  # aggregate 7 or more


@dataclass(frozen=True)
class ClinicalResponse:
    """What the chart says to do.

    Attributes:
        level: The chart row.
        frequency: Minimum frequency of monitoring.
        action: The clinical response.
    """

    level: ResponseLevel
    frequency: str
    action: str


RESPONSES: dict[ResponseLevel, ClinicalResponse] = {
    r.level: r
    for r in (
        ClinicalResponse(
            ResponseLevel.ROUTINE, "minimum 12-hourly", "continue routine NEWS monitoring"
        ),
        ClinicalResponse(
            ResponseLevel.WARD, "minimum 4-6-hourly",
            "inform registered nurse, who must assess the patient and decide whether increased "
            "frequency of clinical monitoring or escalation of care is required",
        ),
        ClinicalResponse(
            ResponseLevel.URGENT_WARD, "minimum 1-hourly",
            "urgent ward-based response: registered nurse informs the medical team caring for the "
            "patient, who review and decide whether escalation of care is necessary",
        ),
        ClinicalResponse(
            ResponseLevel.URGENT, "minimum 1-hourly",
            "urgent response: registered nurse immediately informs the medical team; urgent "
            "assessment by a clinician or team with competencies in the care of acutely ill "
            "patients; clinical care in an environment with monitoring facilities",
        ),
        ClinicalResponse(
            ResponseLevel.EMERGENCY, "continuous monitoring of vital signs",
            "emergency response: registered nurse immediately informs the medical team (at least "
            "specialist registrar level); emergency assessment by a team with critical-care "
            "competencies including advanced airway management; consider transfer to level 2/3 "
            "care (HDU or ICU)",
        ),
    )
}  # fmt: skip


def risk_of(total: int, any_three: bool) -> Risk:
    """Chart 3: >= 7 high, 5-6 medium, a single 3 (aggregate < 5) low-medium, else low."""
    if total >= 7:
        return Risk.HIGH
    if total >= 5:
        return Risk.MEDIUM
    return Risk.LOW_MEDIUM if any_three else Risk.LOW


def response_of(total: int, any_three: bool) -> ClinicalResponse:
    """Chart 4: the clinical response an aggregate (and the single-3 rule) implies."""
    if total >= 7:
        return RESPONSES[ResponseLevel.EMERGENCY]
    if total >= 5:
        return RESPONSES[ResponseLevel.URGENT]
    if any_three:
        return RESPONSES[ResponseLevel.URGENT_WARD]
    return RESPONSES[ResponseLevel.WARD if total >= 1 else ResponseLevel.ROUTINE]


class Completeness(StrEnum):
    """Whether a NEWS2 could be scored: a missing or stale parameter is never taken as normal."""

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"  # at least one parameter never measured
    STALE = "stale"  # all measured, at least one older than its freshness limit


@dataclass(frozen=True)
class Reading:
    """One parameter's latest value (chart unit) and when it was observed (epoch seconds)."""

    value: float
    observed_at: float


# How old each parameter may be before the score is stale (seconds); overridable per call.
DEFAULT_MAX_AGE: dict[Parameter, float] = {
    Parameter.RESPIRATION_RATE: 15 * 60.0,
    Parameter.SPO2: 15 * 60.0,
    Parameter.PULSE: 15 * 60.0,
    Parameter.SYSTOLIC_BP: 60 * 60.0,
    Parameter.TEMPERATURE: 4 * 3600.0,
    Parameter.SUPPLEMENTAL_OXYGEN: 12 * 3600.0,
    Parameter.CONSCIOUSNESS: 12 * 3600.0,
}


@dataclass(frozen=True)
class News2Result:
    """A NEWS2 score, or why there is none.

    Attributes:
        completeness: Complete, incomplete (missing) or stale.
        points: Points of each parameter that was present and fresh.
        missing: Parameters with no usable value.
        stale: Parameters whose value is older than allowed.
        total: The aggregate (0-20), only when complete.
        risk: Chart 3 risk, only when complete.
        response: Chart 4 clinical response, only when complete.
        minimum_total: Sum of the points that could be scored: a floor, never a score.
    """

    completeness: Completeness
    points: dict[Parameter, int]
    missing: tuple[Parameter, ...] = ()
    stale: tuple[Parameter, ...] = ()
    total: int | None = None
    risk: Risk | None = None
    response: ClinicalResponse | None = None
    minimum_total: int = 0
    any_three: bool = field(default=False)


def score_news2(
    readings: Mapping[Parameter, Reading],
    *,
    scale: SpO2Scale,
    now: float,
    max_age: Mapping[Parameter, float] | None = None,
) -> News2Result:
    """Score NEWS2 from each parameter's latest reading.

    Args:
        readings: Latest reading per parameter (absent or NaN: missing).
        scale: The patient's SpO2 scale.
        now: The time the score is for (epoch seconds).
        max_age: Seconds each parameter stays fresh (default `DEFAULT_MAX_AGE`).

    Returns:
        A complete score with risk and response, or an incomplete/stale result that names the
        parameters and gives only a floor (``minimum_total``).
    """
    limits = {**DEFAULT_MAX_AGE, **(max_age or {})}
    usable = {p: r for p, r in readings.items() if math.isfinite(r.value)}
    missing = tuple(p for p in PARAMETERS if p not in usable)
    stale = tuple(p for p in PARAMETERS if p in usable and now - usable[p].observed_at > limits[p])
    fresh = {p: r.value for p, r in usable.items() if p not in stale}
    on_oxygen = fresh.get(Parameter.SUPPLEMENTAL_OXYGEN, 0.0) >= 0.5
    points = {p: score_parameter(p, v, scale=scale, on_oxygen=on_oxygen) for p, v in fresh.items()}
    floor, any_three = sum(points.values()), 3 in points.values()
    if missing or stale:
        status = Completeness.INCOMPLETE if missing else Completeness.STALE
        return News2Result(status, points, missing, stale, minimum_total=floor, any_three=any_three)
    return News2Result(
        Completeness.COMPLETE, points, total=floor, risk=risk_of(floor, any_three),
        response=response_of(floor, any_three), minimum_total=floor, any_three=any_three,
    )  # fmt: skip
