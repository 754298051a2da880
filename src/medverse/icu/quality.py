"""Signal-quality checks over a batch: impossible values, spikes and flat lines are suppressed.

A suppressed value is kept out of the score (the parameter stays at its last good value, and
goes stale if no good value follows) and the reason is stored with the vital set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from medverse.icu.parameters import COLUMN, PARAMETERS, PLAUSIBLE, Parameter


def _per_parameter(values: dict[Parameter, float], default: float) -> NDArray[np.float64]:
    return np.asarray([values.get(p, default) for p in PARAMETERS], dtype=np.float64)


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the checks (chart units, seconds).

    Attributes:
        max_jump: Largest believable change between two samples less than ``spike_seconds``
            apart; a bigger one is a spike unless the next sample confirms it.
        spike_seconds: Samples further apart than this are never called a spike.
        confirm_within: A sample this close to a suppressed spike confirms it (accepted).
        flat_seconds: A value repeated unchanged this long is a flat line (sensor off or
            frozen), for the parameters listed in ``flat_parameters``.
        flat_parameters: Parameters that always vary in a live patient.
    """

    max_jump: dict[Parameter, float] = field(
        default_factory=lambda: {
            Parameter.PULSE: 50.0,
            Parameter.RESPIRATION_RATE: 25.0,
            Parameter.SPO2: 15.0,
            Parameter.SYSTOLIC_BP: 70.0,
            Parameter.TEMPERATURE: 2.0,
        }
    )
    spike_seconds: float = 30.0
    confirm_within: float = 0.1
    flat_seconds: float = 600.0
    flat_parameters: tuple[Parameter, ...] = (Parameter.PULSE, Parameter.RESPIRATION_RATE)


@dataclass
class QualityState:
    """Per bed and parameter: last accepted value, last raw value and when it started."""

    accepted: NDArray[np.float64]
    accepted_at: NDArray[np.float64]
    raw: NDArray[np.float64]
    raw_since: NDArray[np.float64]
    pending: NDArray[np.float64]

    @classmethod
    def empty(cls, beds: int) -> QualityState:
        """State for ``beds`` beds with nothing seen."""
        shape = (beds, len(PARAMETERS))
        nan = np.full(shape, np.nan)
        return cls(nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy())

    def grow(self, beds: int) -> None:
        """Make room for ``beds`` beds."""
        extra = beds - self.accepted.shape[0]
        if extra > 0:
            pad = np.full((extra, len(PARAMETERS)), np.nan)
            for name in ("accepted", "accepted_at", "raw", "raw_since", "pending"):
                setattr(self, name, np.vstack([getattr(self, name), pad]))


class QualityChecker:
    """Applies `QualityRules` to batches, one row per bed (no bed twice in one call).

    Args:
        rules: The thresholds.
    """

    def __init__(self, rules: QualityRules | None = None) -> None:
        self.rules = rules or QualityRules()
        self._low = _per_parameter({p: lim.low for p, lim in PLAUSIBLE.items()}, -np.inf)
        self._high = _per_parameter({p: lim.high for p, lim in PLAUSIBLE.items()}, np.inf)
        self._jump = _per_parameter(self.rules.max_jump, np.inf)
        self._flat = np.zeros(len(PARAMETERS), dtype=bool)
        self._flat[[COLUMN[p] for p in self.rules.flat_parameters]] = True

    def check(
        self, state: QualityState, rows: NDArray[np.intp], values: NDArray[np.float64],
        times: NDArray[np.float64],
    ) -> tuple[NDArray[np.bool_], dict[tuple[int, int], str]]:  # fmt: skip
        """Check a batch and update ``state``.

        Args:
            state: Per-bed state (updated in place).
            rows: Bed row of each batch item (distinct).
            values: (items, parameters) new values, NaN where not sent.
            times: (items,) observation times.

        Returns:
            The accepted mask (items, parameters) and ``{(item, column): reason}`` for every
            suppressed value.
        """
        sent = np.isfinite(values)
        when = times[:, None]
        impossible = sent & ((values < self._low) | (values > self._high))
        previous, previous_at = state.accepted[rows], state.accepted_at[rows]
        close_in_time = (when - previous_at) < self.rules.spike_seconds
        jump = np.abs(values - previous) > self._jump
        confirmed = np.abs(values - state.pending[rows]) <= self.rules.confirm_within
        spike = sent & ~impossible & close_in_time & jump & ~confirmed
        same = sent & (values == state.raw[rows])
        since = np.where(same, state.raw_since[rows], when)
        flat = same & self._flat & ((when - since) >= self.rules.flat_seconds)
        accepted = sent & ~impossible & ~spike & ~flat
        state.raw[rows] = np.where(sent, values, state.raw[rows])
        state.raw_since[rows] = np.where(sent, since, state.raw_since[rows])
        state.pending[rows] = np.where(
            spike, values, np.where(accepted, np.nan, state.pending[rows])
        )
        state.accepted[rows] = np.where(accepted, values, previous)
        state.accepted_at[rows] = np.where(accepted, when, previous_at)
        reasons = self._reasons(values, previous, times, since, impossible, spike, flat)
        return accepted, reasons

    def _reasons(
        self, values: NDArray[np.float64], previous: NDArray[np.float64],
        times: NDArray[np.float64], since: NDArray[np.float64], impossible: NDArray[np.bool_],
        spike: NDArray[np.bool_], flat: NDArray[np.bool_],
    ) -> dict[tuple[int, int], str]:  # fmt: skip
        reasons: dict[tuple[int, int], str] = {}
        for item, column in zip(*np.nonzero(impossible | spike | flat)):
            parameter, value = PARAMETERS[column], values[item, column]
            if impossible[item, column]:
                limits = PLAUSIBLE[parameter]
                text = f"{value:g} outside physiological limits {limits.low:g}-{limits.high:g}"
            elif spike[item, column]:
                text = f"spike: {previous[item, column]:g} -> {value:g}, awaiting confirmation"
            else:
                seconds = times[item] - since[item, column]
                text = f"flat line: {value:g} unchanged for {seconds:.0f} s"
            reasons[(int(item), int(column))] = text
        return reasons
