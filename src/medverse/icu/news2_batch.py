"""NEWS2 for many beds at once: the same `news2.BANDS` read with numpy over (beds x parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray

from medverse.icu import news2
from medverse.icu.news2 import Bands, Completeness, Risk
from medverse.icu.parameters import COLUMN, PARAMETERS, Parameter

# Integer codes of `Completeness` and `Risk` in the arrays below (index into these tuples).
COMPLETENESS: tuple[Completeness, ...] = tuple(Completeness)
RISKS: tuple[Risk, ...] = tuple(Risk)
_NUDGE = 1e-7


@dataclass(frozen=True)
class BatchScores:
    """NEWS2 of every bed in a batch.

    Attributes:
        points: (beds, parameters) points; -1 where missing or stale.
        completeness: Index into `COMPLETENESS` per bed.
        total: Aggregate per bed; -1 unless complete.
        minimum_total: Sum of the points that could be scored (a floor).
        any_three: Whether any scored parameter gave 3 points.
        risk: Index into `RISKS` per bed; -1 unless complete.
    """

    points: NDArray[np.int8]
    completeness: NDArray[np.int8]
    total: NDArray[np.int16]
    minimum_total: NDArray[np.int16]
    any_three: NDArray[np.bool_]
    risk: NDArray[np.int8]


@cache
def _band_arrays(bands: Bands) -> tuple[float, NDArray[np.float64], NDArray[np.int8]]:
    """Scale, upper bounds in chart units and scores of a chart's bands (built once)."""
    return (
        10.0**bands.decimals,
        np.asarray(bands.upper_units, dtype=np.float64),
        np.asarray(bands.scores, dtype=np.int8),
    )


def _band_points(bands: Bands, values: NDArray[np.float64]) -> NDArray[np.int8]:
    scale, uppers, scores = _band_arrays(bands)
    units = np.floor(values * scale + 0.5 + _NUDGE)
    index = np.searchsorted(uppers, units, side="left")
    return scores[np.minimum(index, len(scores) - 1)]


def _max_ages(max_age: Mapping[Parameter, float] | None) -> NDArray[np.float64]:
    if not max_age:
        return _DEFAULT_MAX_AGES
    limits = {**news2.DEFAULT_MAX_AGE, **max_age}
    return np.asarray([limits[p] for p in PARAMETERS], dtype=np.float64)


_DEFAULT_MAX_AGES = np.asarray([news2.DEFAULT_MAX_AGE[p] for p in PARAMETERS], dtype=np.float64)
_DEFAULT_MAX_AGES.setflags(write=False)


def score_batch(
    values: NDArray[np.float64],
    observed_at: NDArray[np.float64],
    scale_2: NDArray[np.bool_],
    *,
    now: float | NDArray[np.float64],
    max_age: Mapping[Parameter, float] | None = None,
) -> BatchScores:
    """Score NEWS2 for each row (bed) of ``values``.

    Args:
        values: (beds, 7) latest values in `PARAMETERS` order, chart units, NaN when missing.
        observed_at: (beds, 7) epoch seconds of each value.
        scale_2: (beds,) True where the patient is on SpO2 scale 2.
        now: The time the scores are for (epoch seconds), one for all or (beds, 1) per bed.
        max_age: Seconds each parameter stays fresh (default `news2.DEFAULT_MAX_AGE`).

    Returns:
        Per-bed points, completeness, total (complete beds only), floor and risk; agrees with
        `news2.score_news2` bed by bed.
    """
    present = np.isfinite(values)
    fresh = present & ((now - observed_at) <= _max_ages(max_age))
    safe = np.where(fresh, values, 0.0)
    points = np.zeros(values.shape, dtype=np.int8)
    for parameter, bands in news2.BANDS.items():
        column = COLUMN[parameter]
        points[:, column] = _band_points(bands, safe[:, column])
    oxygen = safe[:, COLUMN[Parameter.SUPPLEMENTAL_OXYGEN]] >= 0.5
    points[:, COLUMN[Parameter.SUPPLEMENTAL_OXYGEN]] = np.where(oxygen, news2.OXYGEN_POINTS, 0)
    alert = np.floor(safe[:, COLUMN[Parameter.CONSCIOUSNESS]]) == 0
    points[:, COLUMN[Parameter.CONSCIOUSNESS]] = np.where(alert, 0, news2.CONSCIOUSNESS_POINTS)
    spo2 = safe[:, COLUMN[Parameter.SPO2]]
    scale_2_points = np.where(
        oxygen,
        _band_points(news2.SPO2_SCALE_2_OXYGEN, spo2),
        _band_points(news2.SPO2_SCALE_2_AIR, spo2),
    )
    points[:, COLUMN[Parameter.SPO2]] = np.where(
        scale_2, scale_2_points, _band_points(news2.SPO2_SCALE_1, spo2)
    )
    points = np.where(fresh, points, np.int8(-1)).astype(np.int8)
    return _summarise(points, present, fresh)


def _summarise(
    points: NDArray[np.int8], present: NDArray[np.bool_], fresh: NDArray[np.bool_]
) -> BatchScores:
    counted = np.where(points >= 0, points, 0)
    minimum = counted.sum(axis=1).astype(np.int16)
    any_three = (points == 3).any(axis=1)
    complete = fresh.all(axis=1)
    status = np.where(
        complete,
        COMPLETENESS.index(Completeness.COMPLETE),
        np.where(
            present.all(axis=1),
            COMPLETENESS.index(Completeness.STALE),
            COMPLETENESS.index(Completeness.INCOMPLETE),
        ),
    ).astype(np.int8)
    risk = np.where(
        minimum >= 7,
        RISKS.index(Risk.HIGH),
        np.where(
            minimum >= 5,
            RISKS.index(Risk.MEDIUM),
            np.where(any_three, RISKS.index(Risk.LOW_MEDIUM), RISKS.index(Risk.LOW)),
        ),
    )
    return BatchScores(
        points=points,
        completeness=status,
        total=np.where(complete, minimum, -1).astype(np.int16),
        minimum_total=minimum,
        any_three=any_three,
        risk=np.where(complete, risk, -1).astype(np.int8),
    )
