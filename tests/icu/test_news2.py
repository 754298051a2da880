"""NEWS2 against a table typed from the RCP 2017 chart (not the implementation's bands)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medverse.icu.news2 import (
    Completeness,
    Reading,
    ResponseLevel,
    Risk,
    score_news2,
    score_parameter,
)
from medverse.icu.news2_batch import COMPLETENESS, RISKS, score_batch
from medverse.icu.parameters import PARAMETERS, Acvpu, Parameter, SpO2Scale

P = Parameter
# RCP 2017 NEWS2 Chart 1, typed row by row: (lowest, highest, points), inclusive, None = open.
CHART: dict[str, list[tuple[float | None, float | None, int]]] = {
    "respiration_rate": [(None, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, None, 3)],
    "spo2_scale_1": [(None, 91, 3), (92, 93, 2), (94, 95, 1), (96, None, 0)],
    "spo2_scale_2_air": [(None, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0), (93, None, 0)],
    "spo2_scale_2_oxygen": [
        (None, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0), (93, 94, 1), (95, 96, 2),
        (97, None, 3),
    ],
    "systolic_bp": [(None, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, None, 3)],
    "pulse": [(None, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, None, 3)],
    "temperature": [
        (None, 35.0, 3), (35.1, 36.0, 1), (36.1, 38.0, 0), (38.1, 39.0, 1), (39.1, None, 2),
    ],
}  # fmt: skip
STEP = {"temperature": 0.1}
NORMAL = {P.RESPIRATION_RATE: 16, P.SPO2: 97, P.SUPPLEMENTAL_OXYGEN: 0, P.SYSTOLIC_BP: 120,
          P.PULSE: 70, P.CONSCIOUSNESS: 0, P.TEMPERATURE: 37.0}  # fmt: skip


def chart_points(row: str, value: float) -> int:
    """Points the typed chart gives ``value`` (already at chart resolution)."""
    for low, high, points in CHART[row]:
        if (low is None or value >= low - 1e-9) and (high is None or value <= high + 1e-9):
            return points
    raise AssertionError(f"{value} falls in no band of {row}")


def score_row(row: str, value: float) -> int:
    """Our implementation's points for a chart row."""
    if row.startswith("spo2"):
        scale = SpO2Scale.SCALE_1 if row == "spo2_scale_1" else SpO2Scale.SCALE_2
        return score_parameter(P.SPO2, value, scale=scale, on_oxygen=row.endswith("oxygen"))
    return score_parameter(P(row), value, scale=SpO2Scale.SCALE_1)


BOUNDARIES = [
    (row, edge, side)
    for row, bands in CHART.items()
    for low, high, _ in bands
    for edge in (low, high)
    if edge is not None
    for side in (-1, 0, 1)
]


@pytest.mark.parametrize(("row", "edge", "side"), BOUNDARIES)
def test_every_band_boundary_on_both_sides(row: str, edge: float, side: int) -> None:
    value = round(edge + side * STEP.get(row, 1), 1)
    assert score_row(row, value) == chart_points(row, value)


@settings(max_examples=300, deadline=None)
@given(row=st.sampled_from(sorted(CHART)), data=st.data())
def test_any_value_at_chart_resolution_scores_as_the_chart(row: str, data: st.DataObject) -> None:
    if row == "temperature":
        value = data.draw(st.integers(300, 440)) / 10
    else:
        value = float(data.draw(st.integers(0, 300)))
    assert score_row(row, value) == chart_points(row, value)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(0, 300, allow_nan=False), row=st.sampled_from(sorted(CHART)))
def test_between_values_round_half_up_to_the_chart(value: float, row: str) -> None:
    per_unit = 10 if row == "temperature" else 1
    at_resolution = math.floor(value * per_unit + 0.5 + 1e-7) / per_unit
    assert score_row(row, value) == chart_points(row, at_resolution)


def test_documented_rounding_examples() -> None:
    assert score_parameter(P.RESPIRATION_RATE, 20.5, scale=SpO2Scale.SCALE_1) == 2
    assert score_parameter(P.RESPIRATION_RATE, 20.49, scale=SpO2Scale.SCALE_1) == 0
    assert score_parameter(P.TEMPERATURE, 38.05, scale=SpO2Scale.SCALE_1) == 1
    assert score_parameter(P.TEMPERATURE, 38.04, scale=SpO2Scale.SCALE_1) == 0


def test_oxygen_and_consciousness() -> None:
    s1 = SpO2Scale.SCALE_1
    assert score_parameter(P.SUPPLEMENTAL_OXYGEN, 1, scale=s1) == 2
    assert score_parameter(P.SUPPLEMENTAL_OXYGEN, 0, scale=s1) == 0
    assert score_parameter(P.CONSCIOUSNESS, Acvpu.ALERT, scale=s1) == 0
    for level in (Acvpu.NEW_CONFUSION, Acvpu.VOICE, Acvpu.PAIN, Acvpu.UNRESPONSIVE):
        assert score_parameter(P.CONSCIOUSNESS, level, scale=s1) == 3


def test_scale_2_at_93_and_above_depends_on_air_or_oxygen() -> None:
    s2 = SpO2Scale.SCALE_2
    assert [score_parameter(P.SPO2, v, scale=s2, on_oxygen=False) for v in (93, 97, 100)] == [0] * 3
    assert [score_parameter(P.SPO2, v, scale=s2, on_oxygen=True) for v in (93, 95, 97)] == [1, 2, 3]
    # scale 1 ignores oxygen for SpO2 (the oxygen itself scores 2)
    assert score_parameter(P.SPO2, 97, scale=SpO2Scale.SCALE_1, on_oxygen=True) == 0


# A vital set whose parameters score the given points (values picked from the typed chart).
VALUE_FOR_POINTS = {
    P.RESPIRATION_RATE: {0: 16, 1: 10, 2: 22, 3: 26},
    P.SPO2: {0: 97, 1: 95, 2: 93, 3: 90},
    P.SUPPLEMENTAL_OXYGEN: {0: 0, 2: 1},
    P.SYSTOLIC_BP: {0: 120, 1: 105, 2: 95, 3: 85},
    P.PULSE: {0: 70, 1: 95, 2: 120, 3: 140},
    P.CONSCIOUSNESS: {0: 0, 3: 2},
    P.TEMPERATURE: {0: 37.0, 1: 38.5, 2: 39.5, 3: 34.0},
}


def expected_risk(points: dict[Parameter, int]) -> tuple[Risk, ResponseLevel]:
    """Chart 3 and Chart 4 typed from the RCP chart."""
    total, three = sum(points.values()), 3 in points.values()
    if total >= 7:
        return Risk.HIGH, ResponseLevel.EMERGENCY
    if total >= 5:
        return Risk.MEDIUM, ResponseLevel.URGENT
    if three:
        return Risk.LOW_MEDIUM, ResponseLevel.URGENT_WARD
    return Risk.LOW, (ResponseLevel.WARD if total else ResponseLevel.ROUTINE)


point_sets = st.fixed_dictionaries(
    {p: st.sampled_from(sorted(VALUE_FOR_POINTS[p])) for p in PARAMETERS}
)


@settings(max_examples=300, deadline=None)
@given(points=point_sets)
def test_aggregate_bands_and_single_three_rule(points: dict[Parameter, int]) -> None:
    readings = {p: Reading(float(VALUE_FOR_POINTS[p][n]), 1000.0) for p, n in points.items()}
    result = score_news2(readings, scale=SpO2Scale.SCALE_1, now=1000.0)
    risk, level = expected_risk(points)
    assert result.completeness == Completeness.COMPLETE
    assert result.total == sum(points.values())
    assert (result.risk, result.response and result.response.level) == (risk, level)


def test_aggregate_edges() -> None:
    cases = [
        ({}, Risk.LOW),
        ({P.PULSE: 2, P.TEMPERATURE: 2}, Risk.LOW),
        ({P.PULSE: 3}, Risk.LOW_MEDIUM),
        ({P.PULSE: 3, P.TEMPERATURE: 2}, Risk.MEDIUM),
        ({P.PULSE: 3, P.TEMPERATURE: 1, P.SYSTOLIC_BP: 2}, Risk.MEDIUM),
        ({P.PULSE: 3, P.TEMPERATURE: 2, P.SYSTOLIC_BP: 2}, Risk.HIGH),
    ]
    for total_points, risk in cases:
        points = {p: total_points.get(p, 0) for p in PARAMETERS}
        readings = {p: Reading(float(VALUE_FOR_POINTS[p][n]), 0.0) for p, n in points.items()}
        assert score_news2(readings, scale=SpO2Scale.SCALE_1, now=0.0).risk == risk


def test_missing_parameter_is_never_scored_as_normal() -> None:
    readings = {p: Reading(float(v), 0.0) for p, v in NORMAL.items() if p != P.TEMPERATURE}
    result = score_news2(readings, scale=SpO2Scale.SCALE_1, now=0.0)
    assert result.completeness == Completeness.INCOMPLETE
    assert result.missing == (P.TEMPERATURE,)
    assert result.total is None and result.risk is None and result.response is None
    nan = {**readings, P.TEMPERATURE: Reading(math.nan, 0.0)}
    assert score_news2(nan, scale=SpO2Scale.SCALE_1, now=0.0).missing == (P.TEMPERATURE,)


def test_stale_parameter_gives_no_score() -> None:
    readings = {p: Reading(float(v), 0.0) for p, v in NORMAL.items()}
    readings[P.PULSE] = Reading(140.0, -3600.0)  # an hour old; pulse is fresh for 15 min
    result = score_news2(readings, scale=SpO2Scale.SCALE_1, now=0.0)
    assert result.completeness == Completeness.STALE and result.stale == (P.PULSE,)
    assert result.total is None and result.minimum_total == 0
    longer = score_news2(readings, scale=SpO2Scale.SCALE_1, now=0.0, max_age={P.PULSE: 7200})
    assert longer.total == 3 and longer.risk == Risk.LOW_MEDIUM


vital_values = st.fixed_dictionaries(
    {
        P.RESPIRATION_RATE: st.floats(0, 60),
        P.SPO2: st.floats(60, 100),
        P.SUPPLEMENTAL_OXYGEN: st.sampled_from([0.0, 1.0]),
        P.SYSTOLIC_BP: st.floats(40, 260),
        P.PULSE: st.floats(20, 220),
        P.CONSCIOUSNESS: st.sampled_from([float(a) for a in Acvpu]),
        P.TEMPERATURE: st.floats(30, 43),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    beds=st.lists(
        st.tuples(vital_values, st.booleans(), st.sets(st.sampled_from(PARAMETERS), max_size=2),
                  st.sets(st.sampled_from(PARAMETERS), max_size=2)),
        min_size=1, max_size=8,
    )
)  # fmt: skip
def test_batch_scorer_agrees_with_the_scalar_one(beds: list) -> None:
    now = 10_000.0
    values = np.full((len(beds), len(PARAMETERS)), np.nan)
    observed = np.full_like(values, now)
    results = []
    for row, (vitals, scale_2, missing, stale) in enumerate(beds):
        readings = {}
        for column, p in enumerate(PARAMETERS):
            if p in missing:
                continue
            when = now - 86_400 if p in stale else now
            values[row, column], observed[row, column] = vitals[p], when
            readings[p] = Reading(vitals[p], when)
        scale = SpO2Scale.SCALE_2 if scale_2 else SpO2Scale.SCALE_1
        results.append(score_news2(readings, scale=scale, now=now))
    batch = score_batch(values, observed, np.array([b[1] for b in beds]), now=now)
    for row, result in enumerate(results):
        assert COMPLETENESS[batch.completeness[row]] == result.completeness
        assert batch.minimum_total[row] == result.minimum_total
        assert (batch.total[row] if batch.total[row] >= 0 else None) == result.total
        assert (RISKS[batch.risk[row]] if batch.risk[row] >= 0 else None) == result.risk
        scored = {PARAMETERS[c]: int(v) for c, v in enumerate(batch.points[row]) if v >= 0}
        assert scored == result.points
