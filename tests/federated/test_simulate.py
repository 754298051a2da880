"""Flower simulation of the heart task: per-round CSV, curves, a final model matching them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.cli.main import main
from medverse.federated.dp import epsilon_spent
from medverse.federated.heart_data import load_sites
from medverse.federated.heart_task import evaluate, make_model
from medverse.federated.settings import FlSettings, Strategy
from medverse.federated.simulate import simulate


def test_settings_round_trip_through_run_config(tmp_path: Path) -> None:
    settings = FlSettings(tmp_path, tmp_path / "out", sites=3, strategy=Strategy.FEDPROX, mu=0.5)
    assert FlSettings.from_run_config(settings.to_run_config()) == settings


def test_fedprox_simulation_two_sites(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "uci_heart_disease"
    settings = FlSettings(root, tmp_path, sites=2, rounds=2, strategy=Strategy.FEDPROX, epochs=1)
    rows = simulate(settings)
    assert [(int(r["round"]), r["site"]) for r in rows] == [
        (1, "cleveland"), (1, "hungarian"), (1, "global"),
        (2, "cleveland"), (2, "hungarian"), (2, "global"),
    ]  # fmt: skip
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    # The saved global model is the one evaluated in the last round: same AUROC per site.
    payload = torch.load(tmp_path / "global_model.pt", weights_only=True)
    assert payload["format"] == "medverse-fl-heart"
    model = make_model()
    model.load_state_dict(payload["state_dict"])
    for site, row in zip(load_sites(root, 2), rows[3:5], strict=True):
        assert evaluate(model, site.x_test, site.y_test)["auroc"] == pytest.approx(
            float(row["auroc"]), abs=1e-5
        )
    assert float(rows[-1]["auroc"]) > 0.8
    assert json.loads((tmp_path / "privacy.json").read_text())["epsilon"] is None  # no DP


@pytest.mark.slow
def test_central_dp_run_reports_epsilon_from_the_accountant(
    shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "uci_heart_disease"
    settings = FlSettings(root, tmp_path, sites=2, rounds=2, epochs=1, dp_noise=1.0, dp_clip=0.5)
    rows = simulate(settings)
    privacy = json.loads((tmp_path / "privacy.json").read_text())
    assert privacy["epsilon"] == pytest.approx(epsilon_spent(1.0, 2, 1e-5))
    assert 5 < privacy["epsilon"] < 20
    assert np.isfinite([float(r["loss"]) for r in rows]).all()


@pytest.mark.slow
def test_cli_fedavg_four_hospitals(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["fl", "simulate", "--task", "heart", "--dataset", str(shared_data / "uci_heart_disease"),
         "--sites", "4", "--rounds", "3", "--strategy", "fedavg", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    assert "round 3 global: AUROC" in capsys.readouterr().out
    with (tmp_path / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 5
    assert np.isfinite([float(r["auroc"]) for r in rows]).all()


def test_cli_refuses_a_bad_site_before_round_one(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "processed.cleveland.data").write_text("63,1,1,145,233,1,2,150,0,2.3,3,0,6,9\n")
    code = main(["fl", "simulate", "--dataset", str(data), "--sites", "2", "--out", str(tmp_path)])
    assert code == 2
    assert "site cleveland: 1 rows have a diagnosis 'num' outside 0-4" in capsys.readouterr().err


@pytest.mark.slow
def test_wrong_shaped_update_is_rejected_and_the_round_aggregates_the_others(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.simulation import run_simulation

    from medverse.federated.app.client_app import build_client_app
    from medverse.federated.app.server_app import build_server_app

    settings = FlSettings(shared_data / "uci_heart_disease", tmp_path, sites=3, rounds=1, epochs=1)
    honest = build_client_app(settings)
    bad = ClientApp()

    @bad.train()
    def train(msg: Message, context: Context) -> Message:
        if int(str(context.node_config["partition-id"])) != 1:
            return honest(msg, context)
        wrong = ArrayRecord({"0.weight": torch.zeros(3, 3)})  # a site that skips the guard
        metrics = MetricRecord({"num-examples": 100, "train_loss": 0.1, "site-index": 1})
        return Message(RecordDict({"arrays": wrong, "metrics": metrics}), reply_to=msg)

    @bad.evaluate()
    def evaluate_(msg: Message, context: Context) -> Message:
        return honest(msg, context)

    with caplog.at_level("WARNING", logger="medverse.federated.app.checked"):
        run_simulation(
            server_app=build_server_app(settings),
            client_app=bad,
            num_supernodes=3,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
        )
    assert "round 1: rejected the update of node" in caplog.text
    assert "expected {'0.weight': (16, 26)" in caplog.text
    with (tmp_path / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["site"] for r in rows] == ["cleveland", "hungarian", "switzerland", "global"]
    assert float(rows[-1]["auroc"]) > 0.7  # the other two sites' updates were aggregated
