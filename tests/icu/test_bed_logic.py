"""Per-bed logic: signal quality, rate-of-change flags, alerts and the batched learned score."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from medverse.core.errors import ConfigError, InputError
from medverse.icu.alerts import AlertLevel
from medverse.icu.api import open_runtime
from medverse.icu.learned import CAVEAT, FEATURES, BatchScorer, ReferenceModel, load_model
from medverse.icu.monitor import Monitor
from medverse.icu.parameters import Parameter
from medverse.icu.store import sqlite_url
from medverse.icu.vitals import Source, VitalSet

P = Parameter
NORMAL = {P.RESPIRATION_RATE: 16.0, P.SPO2: 97.0, P.SUPPLEMENTAL_OXYGEN: 0.0, P.SYSTOLIC_BP: 120.0,
          P.PULSE: 70.0, P.CONSCIOUSNESS: 0.0, P.TEMPERATURE: 37.0}  # fmt: skip
_counter = iter(range(10**9))


def vitals(at: float, bed: str = "B1", **changes: float) -> VitalSet:
    values = dict(NORMAL)
    values.update({P(k): v for k, v in changes.items()})
    return VitalSet(f"k{next(_counter)}", "W", bed, at, values, Source.HL7)


def test_impossible_values_are_suppressed_with_the_reason() -> None:
    monitor = Monitor()
    first, second = monitor.process([vitals(0), vitals(1, pulse=0.0, spo2=140.0)], 1.0)
    assert second.suppressed == (
        (P.SPO2, "140 outside physiological limits 40-100"),
        (P.PULSE, "0 outside physiological limits 15-300"),
    )
    assert second.total == first.total == 0  # scored from the last good values


def test_a_spike_is_suppressed_until_the_next_sample_confirms_it() -> None:
    monitor = Monitor()
    out = monitor.process([vitals(0), vitals(1, pulse=180.0), vitals(2, pulse=70.0)], 2.0)
    assert out[1].suppressed == ((P.PULSE, "spike: 70 -> 180, awaiting confirmation"),)
    assert out[1].total == 0 and out[2].suppressed == ()
    out = monitor.process([vitals(3, pulse=150.0), vitals(4, pulse=150.0)], 4.0)
    assert out[0].suppressed and out[1].suppressed == () and out[1].total == 3  # confirmed


def test_a_flat_line_is_suppressed_and_the_score_goes_stale() -> None:
    monitor = Monitor()
    out = monitor.process([vitals(t) for t in range(0, 1800, 60)], 1800.0)
    flat = [s for s in out if s.suppressed]
    assert flat and flat[0].vitals.observed_at == 600
    assert dict(flat[0].suppressed) == {
        P.PULSE: "flat line: 70 unchanged for 600 s",
        P.RESPIRATION_RATE: "flat line: 16 unchanged for 600 s",
    }
    stale = [s for s in out if s.completeness == "stale"]
    assert stale[0].vitals.observed_at == 1500  # last good pulse at 540, fresh for 15 min


def test_rate_of_change_flags() -> None:
    monitor = Monitor()
    sets = [vitals(t * 60.0, pulse=70.0 + t * 1.5, spo2=97.0 - 0.25 * t) for t in range(21)]
    out = monitor.process(sets, 1260.0)
    pulse_flags = [(s.vitals.observed_at, f) for s in out for f in s.flags if "pulse" in f]
    assert pulse_flags[0] == (17 * 60, "pulse rose 25.5 in 30 min")  # from 70 at t=0
    news2_flags = [s.vitals.observed_at for s in out if "NEWS2 rose 3 in 60 min" in s.flags]
    assert news2_flags[0] == 900  # pulse 92.5 (1 point) and SpO2 93.25 -> 93 (2 points)
    assert "spo2 fell 5 in 30 min" in out[-1].flags
    assert monitor.alerts.open["W/B1"].level == AlertLevel.TREND


def test_alerts_open_escalate_are_acknowledged_and_resolve() -> None:
    monitor = Monitor()
    monitor.process([vitals(0, pulse=135.0)], 0.0)  # a single 3
    (alert,) = monitor.alerts.open.values()
    assert alert.level == AlertLevel.URGENT_WARD and "a parameter scoring 3" in alert.reason
    monitor.process([vitals(60, pulse=135.0, respiration_rate=26.0, temperature=39.5)], 60.0)
    assert alert.level == AlertLevel.EMERGENCY and alert.escalations == 1  # NEWS2 8
    monitor.alerts.acknowledge(alert.id, "nurse.a", 90.0)
    monitor.process([vitals(500, pulse=135.0, respiration_rate=26.0, temperature=39.5)], 500.0)
    assert alert.escalations == 1 and alert.acknowledged_by == "nurse.a"  # acked: no timer
    monitor.process([vitals(560)], 560.0)
    assert not monitor.alerts.open and alert.resolved_at == 560.0
    with pytest.raises(InputError):
        monitor.alerts.acknowledge(alert.id, "nurse.a", 600.0)


def test_unacknowledged_emergency_escalates_after_five_minutes() -> None:
    monitor = Monitor()
    hot = {"pulse": 135.0, "respiration_rate": 26.0, "temperature": 39.5}
    monitor.process([vitals(0, **hot)], 0.0)
    (alert,) = monitor.alerts.open.values()
    monitor.process([vitals(240, **hot)], 240.0)
    assert alert.escalations == 0
    monitor.process([vitals(301, **hot)], 301.0)
    assert alert.escalations == 1 and alert.escalated_at == 301.0


def test_missing_parameters_still_alert_from_what_is_known() -> None:
    monitor = Monitor()
    only = VitalSet("m1", "W", "B9", 0.0, {P.PULSE: 140.0, P.SYSTOLIC_BP: 85.0,
                                           P.RESPIRATION_RATE: 30.0}, Source.FHIR)  # fmt: skip
    (scored,) = monitor.process([only], 0.0)
    assert scored.total is None and scored.minimum == 9
    assert monitor.alerts.open["W/B9"].level == AlertLevel.EMERGENCY
    assert "NEWS2 at least 9 (incomplete)" in monitor.alerts.open["W/B9"].reason


class CountingModel(ReferenceModel):
    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, features: np.ndarray) -> np.ndarray:
        assert features.shape[1] == FEATURES
        self.batches.append(features.shape[0])
        return super().predict(features)


def test_learned_score_runs_once_per_batch_for_the_beds_due() -> None:
    model = CountingModel()
    monitor = Monitor(learned=BatchScorer(model, interval=60.0))
    out = monitor.process([vitals(0, bed=f"B{i}") for i in range(50)], 0.0)
    assert model.batches == [50] and all(s.learned is not None for s in out)
    out = monitor.process([vitals(30, bed=f"B{i}") for i in range(50)], 30.0)
    assert model.batches == [50] and all(s.learned is None for s in out)  # not due yet
    sick = monitor.process([vitals(61, bed="B0", pulse=135.0, respiration_rate=26.0)], 61.0)
    assert model.batches == [50, 1] and sick[0].learned is not None
    assert sick[0].learned > out[0].learned if out[0].learned else sick[0].learned > 0.5
    assert "not clinically validated" in CAVEAT


def test_load_model_checks_the_plugin() -> None:
    model = load_model("medverse.icu.learned:ReferenceModel")
    assert model.name == "reference-untrained"
    with pytest.raises(ConfigError, match="cannot load"):
        load_model("no.such.module:Model")
    with pytest.raises(ConfigError, match="predict"):
        load_model("medverse.icu.learned:CAVEAT")


def test_alerts_are_stored_and_acknowledgement_is_kept(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "icu.db")
    runtime = open_runtime(url)

    async def run() -> None:
        runtime.ingestor.start()
        try:
            await runtime.ingestor.submit(vitals(0, bed="B5", pulse=135.0, respiration_rate=26.0,
                                                 temperature=39.5))  # fmt: skip
            (alert,) = runtime.store.alerts(["W"])
            assert alert.level == AlertLevel.EMERGENCY and alert.acknowledged_by is None
            await runtime.ingestor.acknowledge(alert.id, "dr.b")
        finally:
            await runtime.ingestor.stop()

    asyncio.run(run())
    (stored,) = runtime.store.alerts(["W"])
    assert stored.acknowledged_by == "dr.b" and stored.acknowledged_at is not None
    assert runtime.store.alerts(["OTHER"]) == []
    runtime.store.dispose()
    again = open_runtime(url)  # numbering continues after a restart
    assert again.ingestor.monitor.alerts._ids.__next__() == stored.id + 1
    again.store.dispose()
