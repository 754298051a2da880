"""benchmarks/bench_training.py: the ratio it reports, and a --quick run end to end (slow)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "bench_training.py"
KEY = "time_to_0.85_ratio_brief_over_medverse"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_training", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_time_to_target_is_the_first_validation_reaching_it() -> None:
    curve = [
        {"train_seconds": 60.0, "val_dice": 0.70},
        {"train_seconds": 120.0, "val_dice": 0.86},
        {"train_seconds": 180.0, "val_dice": 0.84},
        {"train_seconds": 240.0, "val_dice": 0.90},
    ]
    bench = _bench()
    assert bench.time_to_target(curve) == 120.0
    assert bench.time_to_target(curve[:1]) is None


def test_ratio_line_reports_the_ratio_or_why_not() -> None:
    bench = _bench()
    assert bench.ratio_line(300.0, 120.0, 600.0) == (2.5, f"{KEY}: 2.50")
    ratio, line = bench.ratio_line(None, 120.0, 600.0)
    assert ratio is None and line.startswith(f"{KEY}: n/a (brief did not reach")
    assert "ratio > 5.00" in line
    assert bench.ratio_line(None, None, 600.0)[1] == (
        f"{KEY}: n/a (neither reached 0.85 in 600 s of training)"
    )


@pytest.mark.slow
def test_quick_run_trains_both_recipes_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith(f"{KEY}: ")
    doc = json.loads(out.read_text())
    assert doc["spec"]["budget_s"] == 20.0 and doc["ratio_line"] == lines[-1]
    for name in ("medverse", "brief"):
        result = doc["recipes"][name]
        assert result["n_train"] == 12 and result["n_val"] == 4 and result["steps"] > 0
        times = [row["train_seconds"] for row in result["curve"]]
        assert times == sorted(times) and times[-1] >= 20.0
        assert all(0.0 <= row["val_dice"] <= 1.0 for row in result["curve"])
        assert any(line.startswith(name) for line in lines)
