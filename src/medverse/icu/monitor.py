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
        out: list[ScoredVitals | None] = [None] * len(batch)
        for indices in _rounds(batch):
            items = [batch[i] for i in indices]
            for index, scored in zip(indices, self._round(items, received_at)):
                out[index] = scored
        return [s for s in out if s is not None]

    def _round(self, items: Sequence[VitalSet], received_at: float) -> list[ScoredVitals]:
        rows = np.fromiter((self.row_of(v.bed_id) for v in items), np.intp, len(items))
        nan = np.nan
        values = np.array(
            [[v.values.get(p, nan) for p in PARAMETERS] for v in items], dtype=np.float64
        ).reshape(len(items), len(PARAMETERS))
        times = np.fromiter((v.observed_at for v in items), np.float64, len(items))
        _, reasons = self.checker.check(self.quality, rows, values, times)
        scores = score_batch(
            self.quality.accepted[rows], self.quality.accepted_at[rows], self.scale_2[rows],
            now=times[:, None], max_age=self.config.max_age,
        )  # fmt: skip
        latest = self.quality.accepted[rows]
        flags = self.trends.update(rows, times, latest, scores.minimum_total)
        learned = (
            self.learned.score(rows, times, latest, scores.minimum_total)
            if self.learned is not None
            else np.full(len(items), np.nan)
        )
        self._alert(items, scores, flags, times)
        suppressed: list[list[tuple[Parameter, str]]] = [[] for _ in items]
        for (item, column), reason in reasons.items():
            suppressed[item].append((PARAMETERS[column], reason))
        # plain Python lists: indexing numpy scalars item by item costs more than the scoring
        totals, floors = scores.total.tolist(), scores.minimum_total.tolist()
        status = [_COMPLETENESS[c] for c in scores.completeness.tolist()]
        risks = [_RISKS[r] if r >= 0 else None for r in scores.risk.tolist()]
        learned_scores = [None if v != v else v for v in learned.tolist()]  # NaN -> None
        return [
            ScoredVitals(
                vitals,
                received_at,
                totals[i] if totals[i] >= 0 else None,
                floors[i],
                status[i],
                risks[i],
                learned_scores[i],
                tuple(suppressed[i]),
                tuple(flags[i]),
            )
            for i, vitals in enumerate(items)
        ]

    def _alert(
        self, items: Sequence[VitalSet], scores: BatchScores, flags: list[list[str]],
        times: NDArray[np.float64],
    ) -> None:  # fmt: skip
        open_beds = self.alerts.open
        for i, vitals in enumerate(items):
            floor, three = int(scores.minimum_total[i]), bool(scores.any_three[i])
            level = level_for(floor, three, flags[i])
            if level is None and vitals.bed_id not in open_beds:
                continue  # the common case: nothing to open, raise or resolve
            status = COMPLETENESS[scores.completeness[i]].value
            reason = f"NEWS2 {'at least ' if scores.total[i] < 0 else ''}{floor} ({status})"
            if three:
                reason += ", a parameter scoring 3"
            reason = "; ".join([reason, *flags[i]])
            self.alerts.update(vitals.bed_id, level, reason, float(times[i]))
        self.alerts.escalate_overdue(float(times.max()))


def _rounds(batch: Sequence[VitalSet]) -> list[list[int]]:
    """Split a batch so no bed appears twice in one round (order per bed kept)."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, vitals in enumerate(batch):
        level = seen.get(vitals.bed_id, -1) + 1
        seen[vitals.bed_id] = level
        if level == len(rounds):
            rounds.append([])
        rounds[level].append(index)
    return rounds
