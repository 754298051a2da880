"""WFDB replay of the real PhysioNet recordings as live beds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medverse.cli.main import main
from medverse.core.errors import ConfigError
from medverse.icu.api import replay
from medverse.icu.news2 import Reading, score_news2
from medverse.icu.parameters import COLUMN, Acvpu, Parameter, SpO2Scale
from medverse.icu.store import ObservationStore, sqlite_url
from medverse.icu.wfdb_source import read_series

WFDB = "physionet_icu_waveforms_wfdb"
NUMERICS = f"{WFDB}/mimic_numerics_s00001/s00001-2896-10-10-00-31n"


def test_numerics_trend_maps_zero_to_missing(shared_data: Path) -> None:
    series = read_series(shared_data / NUMERICS)
    assert series.values.shape == (1936, 7)
    assert series.seconds[1] == pytest.approx(60.0)
    pulse = series.values[:, COLUMN[Parameter.PULSE]]
    assert np.isnan(pulse[0]) and pulse[1] == pytest.approx(62.8)  # HR 0 = not measured
    spo2 = series.values[:, COLUMN[Parameter.SPO2]]
    assert 0.15 < np.isnan(spo2).mean() < 0.25  # SpO2 is 0 in 19 % of minutes
    assert np.isnan(series.values[:, COLUMN[Parameter.TEMPERATURE]]).all()


def test_waveforms_give_pulse_and_systolic_pressure(shared_data: Path) -> None:
    series = read_series(shared_data / f"{WFDB}/mimic_waveform_s00001/3975656_0015")
    assert series.values.shape[0] == 60  # 300 s in 5 s windows
    pulse = series.values[:, COLUMN[Parameter.PULSE]]
    systolic = series.values[:, COLUMN[Parameter.SYSTOLIC_BP]]
    assert 40 < np.nanmedian(pulse) < 140 and 90 < np.nanmedian(systolic) < 200


def test_replay_stores_scored_sets_and_never_scores_missing_as_normal(
    shared_data: Path, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path / "icu.db")
    record = shared_data / NUMERICS
    summary = replay([record], url, speed=1e5, ward="W", max_seconds=30 * 60)
    bed = summary.beds["W/s00001-2896-10-10-00-31n"]
    assert bed.stored == 31 and bed.complete == 0  # no temperature, ACVPU or oxygen in it
    assumed = {Parameter.CONSCIOUSNESS: float(Acvpu.ALERT), Parameter.SUPPLEMENTAL_OXYGEN: 0.0,
               Parameter.TEMPERATURE: 37.0}  # fmt: skip
    summary = replay([record], url, speed=1e5, ward="X", max_seconds=30 * 60, assume=assumed)
    assert summary.beds["X/s00001-2896-10-10-00-31n"].complete > 0
    store = ObservationStore.open(url)
    rows = store.history("X/s00001-2896-10-10-00-31n")
    full = [r for r in rows if all(r[p.value] is not None for p in Parameter)]
    assert full, "some minutes carry every parameter (NBP is measured every ~13 min)"
    for row in full:  # a set that carries every parameter scores as the chart says
        readings = {p: Reading(row[p.value], row["observed_at"]) for p in Parameter}
        expected = score_news2(readings, scale=SpO2Scale.SCALE_1, now=row["observed_at"])
        assert (row["news2_total"], row["risk"]) == (expected.total, expected.risk)
    store.dispose()


def test_cli_replay_and_bad_assumption(shared_data: Path, tmp_path: Path, capsys) -> None:
    record = str(shared_data / NUMERICS)
    store = sqlite_url(tmp_path / "c.db")
    code = main(["icu", "replay", record, "--speed", "100000", "--max-seconds", "600",
                 "--store", store, "--assume", "consciousness=A"])  # fmt: skip
    assert code == 0 and "11 stored" in capsys.readouterr().out
    code = main(["icu", "replay", record, "--store", store, "--assume", "mood=happy"])
    assert code == 2 and "--assume 'mood=happy'" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        replay([record], store, speed=0)


def test_prune_keeps_the_retention_period(shared_data: Path, tmp_path: Path, capsys) -> None:
    store = sqlite_url(tmp_path / "p.db")
    replay([shared_data / NUMERICS], store, speed=1e5, ward="W", max_seconds=600)
    assert main(["icu", "prune", "--keep-days", "1", "--store", store]) == 0
    assert "deleted 0 vital sets" in capsys.readouterr().out  # replayed just now
    assert main(["icu", "prune", "--keep-days", "-1", "--store", store]) == 2
    opened = ObservationStore.open(store)
    assert opened.count() == 11 and opened.delete_before(1e12) == 11
    opened.dispose()
