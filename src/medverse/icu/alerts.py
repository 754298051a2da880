"""Per-bed alerts: opened from NEWS2 (or a rate-of-change flag), escalated, acknowledged, resolved.

An alert is raised from the NEWS2 floor (the points that could be scored), so a bed with a
missing parameter still alerts when what is known already crosses a threshold. It escalates
when its level rises, or when nobody acknowledges it in time; acknowledging records who and
when; it resolves when the bed falls below every threshold.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import IntEnum

from medverse.core.errors import InputError


class AlertLevel(IntEnum):
    """How urgent an alert is (RCP Chart 4 rows, plus a rate-of-change warning)."""

    TREND = 1  # a rate-of-change flag
    URGENT_WARD = 2  # a single parameter scoring 3
    URGENT = 3  # NEWS2 5-6
    EMERGENCY = 4  # NEWS2 7 or more


# Minutes an unacknowledged alert waits before it escalates to the next responder.
DEFAULT_ACK_WITHIN: dict[AlertLevel, float] = {
    AlertLevel.TREND: 60 * 60.0,
    AlertLevel.URGENT_WARD: 60 * 60.0,
    AlertLevel.URGENT: 30 * 60.0,
    AlertLevel.EMERGENCY: 5 * 60.0,
}


def level_for(news2_floor: int, any_three: bool, flags: list[str]) -> AlertLevel | None:
    """The alert level a bed's state calls for, or None."""
    if news2_floor >= 7:
        return AlertLevel.EMERGENCY
    if news2_floor >= 5:
        return AlertLevel.URGENT
    if any_three:
        return AlertLevel.URGENT_WARD
    return AlertLevel.TREND if flags else None


@dataclass
class Alert:
    """One alert of one bed.

    Attributes:
        id: Unique within the process (the store keeps it).
        bed_id: ``ward/bed``.
        level: Current level.
        reason: Why it is open (NEWS2 and flags at the last change).
        opened_at: Epoch seconds.
        escalations: How many times it escalated (level rise or no acknowledgement in time).
        escalated_at: Last escalation time.
        acknowledged_by: Who acknowledged the current level.
        acknowledged_at: When.
        resolved_at: When the bed fell below every threshold.
    """

    id: int
    bed_id: str
    level: AlertLevel
    reason: str
    opened_at: float
    escalations: int = 0
    escalated_at: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    resolved_at: float | None = None

    @property
    def ward(self) -> str:
        """The bed's ward."""
        return self.bed_id.partition("/")[0]


@dataclass
class AlertBook:
    """Every open alert, one per bed at most; ``changed`` collects alerts to store."""

    ack_within: dict[AlertLevel, float] = field(default_factory=lambda: dict(DEFAULT_ACK_WITHIN))
    open: dict[str, Alert] = field(default_factory=dict)
    changed: dict[int, Alert] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def start_ids_after(self, last_id: int) -> None:
        """Continue numbering after ``last_id`` (the highest stored alert id)."""
        self._ids = itertools.count(last_id + 1)

    def update(self, bed_id: str, level: AlertLevel | None, reason: str, now: float) -> None:
        """Open, raise or resolve the alert of ``bed_id`` from its current level."""
        alert = self.open.get(bed_id)
        if level is None:
            if alert is not None:
                alert.resolved_at = now
                self._touch(self.open.pop(bed_id))
            return
        if alert is None:
            alert = self.open[bed_id] = Alert(next(self._ids), bed_id, level, reason, now)
            self._touch(alert)
        elif level > alert.level:
            alert.level, alert.reason = level, reason
            self._escalate(alert, now)

    def escalate_overdue(self, now: float) -> None:
        """Escalate every open alert left unacknowledged longer than its level allows."""
        for alert in self.open.values():
            if alert.acknowledged_at is not None:
                continue
            since = alert.escalated_at if alert.escalated_at is not None else alert.opened_at
            if now - since >= self.ack_within[alert.level]:
                self._escalate(alert, now)

    def acknowledge(self, alert_id: int, by: str, now: float) -> Alert:
        """Record that ``by`` acknowledged an open alert at ``now``.

        Raises:
            InputError: If no open alert has that id.
        """
        alert = next((a for a in self.open.values() if a.id == alert_id), None)
        if alert is None:
            raise InputError(f"no open alert {alert_id}")
        alert.acknowledged_by, alert.acknowledged_at = by, now
        self._touch(alert)
        return alert

    def drain(self) -> list[Alert]:
        """Alerts changed since the last drain (to store and to push to viewers)."""
        changed = list(self.changed.values())
        self.changed.clear()
        return changed

    def _escalate(self, alert: Alert, now: float) -> None:
        alert.escalations += 1
        alert.escalated_at = now
        alert.acknowledged_by = alert.acknowledged_at = None  # the new level needs a new ack
        self._touch(alert)

    def _touch(self, alert: Alert) -> None:
        self.changed[alert.id] = alert
