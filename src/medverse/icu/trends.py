"""Per-bed trends: values at 5-minute checkpoints for the last hour, and rate-of-change flags."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medverse.icu.parameters import COLUMN, PARAMETERS, Parameter

SLOT_SECONDS = 300.0  # one checkpoint per 5 minutes
SLOTS = 13  # the last hour, plus the current slot


@dataclass(frozen=True)
class RocRule:
    """Flag a change of at least ``change`` (signed: + rise, - fall) within ``window`` seconds.

    Attributes:
        parameter: The parameter watched (None: the NEWS2 floor).
        change: Signed change in chart units (or NEWS2 points).
        window: Seconds, a multiple of 5 minutes up to an hour.
    """

    parameter: Parameter | None
    change: float
    window: float

    def describe(self, delta: float) -> str:
        """``"pulse rose 30 in 30 min"``."""
        name = self.parameter.value if self.parameter else "NEWS2"
        verb = "rose" if self.change > 0 else "fell"
        return f"{name} {verb} {abs(delta):g} in {self.window / 60:g} min"


DEFAULT_RULES: tuple[RocRule, ...] = (
    RocRule(Parameter.PULSE, +25.0, 1800.0),
    RocRule(Parameter.RESPIRATION_RATE, +6.0, 1800.0),
    RocRule(Parameter.SYSTOLIC_BP, -30.0, 3600.0),
    RocRule(Parameter.SPO2, -4.0, 1800.0),
    RocRule(None, +3.0, 3600.0),
)
NEWS2_COLUMN = len(PARAMETERS)  # the NEWS2 floor is tracked as an eighth series
SERIES = NEWS2_COLUMN + 1


class TrendTracker:
    """Checkpoint rings (beds x 8 series x 13 slots) and the rate-of-change rules over them.

    Each 5-minute slot keeps the lowest and the highest value seen in it, so a rise is measured
    from the lowest value in the window and a fall from the highest.

    Args:
        rules: The rate-of-change rules.
    """

    def __init__(self, rules: tuple[RocRule, ...] = DEFAULT_RULES) -> None:
        self.rules = rules
        # the rules as arrays, so one numpy pass checks them all
        self._columns = np.asarray(
            [COLUMN[r.parameter] if r.parameter else NEWS2_COLUMN for r in rules], dtype=np.intp
        )
        self._rise = np.asarray([r.change > 0 for r in rules], dtype=bool)
        self._sign = np.sign([r.change for r in rules])
        self._size = np.abs([r.change for r in rules])
        self._window_slots = np.asarray([round(r.window / SLOT_SECONDS) for r in rules])
        self._none_inside = np.where(self._rise, np.inf, -np.inf)[None, :, None]
        # which half of `extremes` each rule reads: lows for a rise, highs for a fall
        self._rule_offsets = (((~self._rise).astype(np.intp) * SERIES + self._columns) * SLOTS)[
            None, :, None
        ] + np.arange(SLOTS)[None, None, :]
        self._slot_offsets = (self._columns * SLOTS)[None, :, None] + np.arange(SLOTS)
        self._series = np.arange(SERIES) * SLOTS
        self.extremes = np.full((0, 2, SERIES, SLOTS), np.nan)  # [bed, low|high, series, slot]
        self.slots = np.full((0, SERIES, SLOTS), -1, dtype=np.int64)

    @property
    def low(self) -> NDArray[np.float64]:
        """(beds, series, slots) lowest value seen in each slot."""
        return self.extremes[:, 0]

    @property
    def high(self) -> NDArray[np.float64]:
        """(beds, series, slots) highest value seen in each slot."""
        return self.extremes[:, 1]

    def _grow(self, beds: int) -> None:
        extra = beds - self.slots.shape[0]
        if extra > 0:
            more = max(extra, self.slots.shape[0])
            self.extremes = np.concatenate(
                [self.extremes, np.full((more, *self.extremes.shape[1:]), np.nan)]
            )
            self.slots = np.concatenate([self.slots, np.full((more, *self.slots.shape[1:]), -1)])

    def update(
        self, rows: NDArray[np.intp], times: NDArray[np.float64], latest: NDArray[np.float64],
        news2_floor: NDArray[np.int16],
    ) -> list[list[str]]:  # fmt: skip
        """Record each bed's latest values and return the rate-of-change flags per item.

        Args:
            rows: Bed rows (distinct).
            times: Observation time per item.
            latest: (items, 7) latest accepted values.
            news2_floor: NEWS2 floor per item.
        """
        self._grow(int(rows.max()) + 1 if rows.size else 0)
        series = np.concatenate([latest, news2_floor[:, None].astype(np.float64)], axis=1)
        slot = np.floor(times / SLOT_SECONDS).astype(np.int64)
        self._record(rows, slot, series)
        flags: list[list[str]] = [[] for _ in range(rows.size)]
        if not self.rules:
            return flags
        # flat indices: every ring slot of every rule's series, from its low or high half
        past = self.extremes.reshape(-1)[rows[:, None, None] * (2 * SERIES * SLOTS)
                                         + self._rule_offsets]  # fmt: skip
        slots = self.slots.reshape(-1)[rows[:, None, None] * (SERIES * SLOTS) + self._slot_offsets]
        oldest = (slot[:, None] - self._window_slots[None, :])[:, :, None]
        inside = (slots >= 0) & (slots >= oldest) & np.isfinite(past)
        reference = np.where(inside, past, self._none_inside)
        extreme = np.where(self._rise[None, :], reference.min(axis=2), reference.max(axis=2))
        delta = series[:, self._columns] - extreme
        hit = np.isfinite(delta) & (delta * self._sign >= self._size)
        for item, rule in zip(*np.nonzero(hit)):  # item by item, rules in their order
            flags[item].append(self.rules[rule].describe(float(delta[item, rule])))
        return flags

    def _record(
        self, rows: NDArray[np.intp], slot: NDArray[np.int64], series: NDArray[np.float64]
    ) -> None:
        at = rows[:, None] * (SERIES * SLOTS) + self._series + (slot % SLOTS)[:, None]
        at_low = at + rows[:, None] * (SERIES * SLOTS)  # (beds, 2, series, slots) layout
        both = np.stack([at_low, at_low + SERIES * SLOTS], axis=1)  # (items, 2, series)
        extremes, slots = self.extremes.reshape(-1), self.slots.reshape(-1)
        old, old_slot = extremes[both], slots[at]
        known = np.isfinite(series)
        same_slot = old_slot == slot[:, None]
        low = np.where(same_slot, np.fmin(old[:, 0], series), series)
        high = np.where(same_slot, np.fmax(old[:, 1], series), series)
        extremes[both] = np.where(known[:, None], np.stack([low, high], axis=1), old)
        slots[at] = np.where(known, slot[:, None], old_slot)

    def trend(self, row: int) -> dict[str, list[tuple[float, float]]]:
        """A bed's checkpoints (slot start time, highest value in it) per series, oldest first."""
        names = [p.value for p in PARAMETERS] + ["news2_minimum"]
        out: dict[str, list[tuple[float, float]]] = {}
        for column, name in enumerate(names):
            pairs = [
                (float(s * SLOT_SECONDS), float(v))
                for s, v in zip(self.slots[row, column], self.high[row, column])
                if s >= 0 and np.isfinite(v)
            ]
            out[name] = sorted(pairs)
        return out
