"""The ward monitor: per-bed state, quality checks and NEWS2 for a batch of vital sets at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medverse.icu.alerts import AlertBook, level_for
from medverse.icu.learned import BatchScorer
from medverse.icu.news2_batch import COMPLETENESS, RISKS, BatchScores, score_batch
from medverse.icu.parameters import COLUMN, PARAMETERS, Parameter
from medverse.icu.quality import QualityChecker, QualityRules, QualityState
from medverse.icu.store import ScoredVitals
from medverse.icu.trends import TrendTracker
from medverse.icu.vitals import VitalSet

_COMPLETENESS = tuple(c.value for c in COMPLETENESS)
_RISKS = tuple(r.value for r in RISKS)
_NANS = (np.nan,) * len(PARAMETERS)


@dataclass(frozen=True)
class MonitorConfig:
    """How the monitor scores.

    Attributes:
        max_age: Seconds each parameter stays fresh (default `news2.DEFAULT_MAX_AGE`).
        quality: Signal-quality thresholds.
    """

    max_age: Mapping[Parameter, float] | None = None
    quality: QualityRules | None = None


class Monitor:
    """Every bed's latest good values, scored in batches (one numpy pass per round).

    Each round also updates the trends (rate-of-change flags), the alerts and, for the beds
    that are due, the learned score (one model call per round).

    Args:
        config: Scoring settings.
        scale_2: Beds (``ward/bed``) whose patient is on SpO2 scale 2.
        learned: The learned-score runner (None: no learned score).
    """

    def __init__(
        self,
        config: MonitorConfig | None = None,
        scale_2: set[str] | None = None,
        learned: BatchScorer | None = None,
    ) -> None:
        self.config = config or MonitorConfig()
        self.checker = QualityChecker(self.config.quality)
        self.rows: dict[str, int] = {}
        self.bed_ids: list[str] = []
        self.quality = QualityState.empty(64)
        self.scale_2 = np.zeros(64, dtype=bool)
        self._scale_2_beds = set(scale_2 or ())
        self.trends = TrendTracker()
        self.alerts = AlertBook()
        self.learned = learned

    def row_of(self, bed_id: str) -> int:
        """The state row of ``bed_id`` (added on first sight)."""
        row = self.rows.get(bed_id)
        if row is None:
            row = self.rows[bed_id] = len(self.bed_ids)
            self.bed_ids.append(bed_id)
            if row >= self.scale_2.shape[0]:
                self.quality.grow(2 * row)
                self.scale_2 = np.concatenate([self.scale_2, np.zeros(row, dtype=bool)])
            self.scale_2[row] = bed_id in self._scale_2_beds
        return row

    def set_scale_2(self, bed_id: str, on: bool) -> None:
        """Put a bed's patient on SpO2 scale 2 (True) or scale 1."""
        (self._scale_2_beds.add if on else self._scale_2_beds.discard)(bed_id)
        self.scale_2[self.row_of(bed_id)] = on

    def latest(self, bed_id: str) -> tuple[dict[Parameter, float], dict[Parameter, float]]:
        """A bed's last accepted value and its time, per parameter."""
        row = self.rows[bed_id]
        values, times = self.quality.accepted[row], self.quality.accepted_at[row]
        known = [p for p in PARAMETERS if np.isfinite(values[COLUMN[p]])]
        return (
            {p: float(values[COLUMN[p]]) for p in known},
            {p: float(times[COLUMN[p]]) for p in known},
        )

    def process(self, batch: Sequence[VitalSet], received_at: float) -> list[ScoredVitals]:
        """Check, score and hand on a batch; returns one `ScoredVitals` per item, in order."""
        rounds = _rounds(batch)
        if len(rounds) == 1:  # the usual batch: every bed once
            return self._round(batch, received_at)
        out: list[ScoredVitals | None] = [None] * len(batch)
        for indices in rounds:
            items = [batch[i] for i in indices]
            for index, scored in zip(indices, self._round(items, received_at)):
                out[index] = scored
        return [s for s in out if s is not None]

    def _round(self, items: Sequence[VitalSet], received_at: float) -> list[ScoredVitals]:
        count = len(items)
        rows = self._rows([v.bed_id for v in items])
        values = np.array(
            [list(map(v.values.get, PARAMETERS, _NANS)) for v in items], dtype=np.float64
        ).reshape(count, len(PARAMETERS))
        times = np.fromiter([v.observed_at for v in items], np.float64, count)
        _, reasons = self.checker.check(self.quality, rows, values, times)
        scores = score_batch(
            self.quality.accepted[rows], self.quality.accepted_at[rows], self.scale_2[rows],
            now=times[:, None], max_age=self.config.max_age,
        )  # fmt: skip
        latest = self.quality.accepted[rows]
        flags = self.trends.update(rows, times, latest, scores.minimum_total)
        learned: list[float | None] = [None] * count
        if self.learned is not None:
            scored = self.learned.score(rows, times, latest, scores.minimum_total).tolist()
            learned = [None if v != v else v for v in scored]  # NaN -> None
        self._alert(items, scores, flags, times)
        suppressed: dict[int, list[tuple[Parameter, str]]] = {}
        for (item, column), reason in reasons.items():
            suppressed.setdefault(item, []).append((PARAMETERS[column], reason))
        # plain Python lists: indexing numpy scalars item by item costs more than the scoring
        totals, floors = scores.total.tolist(), scores.minimum_total.tolist()
        status = [_COMPLETENESS[c] for c in scores.completeness.tolist()]
        risks = [_RISKS[r] if r >= 0 else None for r in scores.risk.tolist()]
        return [
            ScoredVitals(
                vitals,
                received_at,
                totals[i] if totals[i] >= 0 else None,
                floors[i],
                status[i],
                risks[i],
                learned[i],
                tuple(suppressed[i]) if i in suppressed else (),
                tuple(flags[i]) if flags[i] else (),
            )
            for i, vitals in enumerate(items)
        ]

    def _rows(self, bed_ids: list[str]) -> NDArray[np.intp]:
        """State rows of these beds (new beds get rows)."""
        found = list(map(self.rows.get, bed_ids))
        if None in found:
            found = [self.row_of(b) if r is None else r for b, r in zip(bed_ids, found)]
        return np.fromiter(found, np.intp, len(found))

    def _alert(
        self, items: Sequence[VitalSet], scores: BatchScores, flags: list[list[str]],
        times: NDArray[np.float64],
    ) -> None:  # fmt: skip
        open_beds = self.alerts.open
        # only items that call for an alert, or whose bed has one open, are looked at
        due = (scores.minimum_total >= 5) | scores.any_three
        if open_beds:
            due |= np.fromiter((v.bed_id in open_beds for v in items), bool, len(items))
        floors, threes = scores.minimum_total.tolist(), scores.any_three.tolist()
        for i in np.flatnonzero(due | np.fromiter(map(bool, flags), bool, len(flags))).tolist():
            vitals, floor, three = items[i], floors[i], threes[i]
            level = level_for(floor, three, flags[i])
            status = COMPLETENESS[scores.completeness[i]].value
            reason = f"NEWS2 {'at least ' if scores.total[i] < 0 else ''}{floor} ({status})"
            if three:
                reason += ", a parameter scoring 3"
            reason = "; ".join([reason, *flags[i]])
            self.alerts.update(vitals.bed_id, level, reason, float(times[i]))
        self.alerts.escalate_overdue(float(times.max()))


def _rounds(batch: Sequence[VitalSet]) -> list[list[int]]:
    """Split a batch so no bed appears twice in one round (order per bed kept)."""
    bed_ids = [v.bed_id for v in batch]
    if len(set(bed_ids)) == len(bed_ids):
        return [list(range(len(bed_ids)))] if bed_ids else []
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, bed_id in enumerate(bed_ids):
        level = seen.get(bed_id, -1) + 1
        seen[bed_id] = level
        if level == len(rounds):
            rounds.append([])
        rounds[level].append(index)
    return rounds
