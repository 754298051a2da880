"""``medverse plan`` on the real hippocampus dataset writes both JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medverse.cli.main import main
from medverse.preprocessing.fingerprint import Fingerprint
from medverse.preprocessing.plan import Plan
from tests.conftest import HIPPOCAMPUS


def test_plan_command_writes_fingerprint_and_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plans"
    assert main(["plan", str(HIPPOCAMPUS), "--out", str(out)]) == 0
    fingerprint = Fingerprint.load(out / "fingerprint.json")
    plan = Plan.load(out / "plan.json")
    assert fingerprint.num_cases == 208
    assert plan.normalization == "zscore"
    assert plan.target_spacing == pytest.approx((1.0, 1.0, 1.0))
    assert plan.patch_size == (40, 56, 40)
    assert "plan.json" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["fingerprint.json", "plan.json"]


def test_plan_command_records_overrides(tmp_path: Path) -> None:
    code = main(
        [
            "plan",
            str(HIPPOCAMPUS),
            "--out",
            str(tmp_path),
            "--max-cases",
            "5",
            "--preset",
            "unet_small",
            "--override",
            "patch_size=32,48,32",
        ]
    )
    assert code == 0
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["patch_size"] == [32, 48, 32]
    assert data["overrides"] == {"patch_size": [32, 48, 32]}
    assert data["preset"] == "unet_small"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--override", "patch_size=30,48,32"], "multiple of the network stride"),
        (["--override", "oops"], "KEY=VALUE"),
        (["--preset", "nope"], "unknown model preset"),
    ],
)
def test_plan_command_reports_bad_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["plan", str(HIPPOCAMPUS), "--out", str(tmp_path), "--max-cases", "2", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "plan.json").exists()


def test_plan_command_on_a_folder_without_dataset_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(tmp_path)]) == 2
    assert "dataset.json" in capsys.readouterr().err
