"""SecAgg+ (legacy path): equals FedAvg within quantisation, hides one site, survives a drop."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from medverse.federated.aggregation import fedavg
from medverse.federated.heart_data import load_sites
from medverse.federated.heart_task import TrainSettings, get_arrays, make_model, train_local
from medverse.federated.settings import FlSettings

HIDDEN = 256  # 7,169 parameters, so a chance correlation is ~0.012 (1/sqrt(n))
# SecAgg+ defaults: clipping_range 8, quantization_range 2**22 -> one step is 16 / 2**22 = 3.8e-6.
QUANT_TOL = 1e-4


def _run(settings: FlSettings, drop_site: int | None) -> tuple[list[np.ndarray], dict]:
    for key, value in {
        "FLWR_TELEMETRY_ENABLED": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("FLWR_HOME", tempfile.mkdtemp(prefix="medverse-flwr-"))
    from flwr.simulation import run_simulation

    from medverse.federated.app.secagg import (
        SecAggOutcome,
        build_secagg_client_app,
        build_secagg_server_app,
    )

    outcome = SecAggOutcome()
    run_simulation(
        server_app=build_secagg_server_app(settings, outcome, hidden=HIDDEN),
        client_app=build_secagg_client_app(settings, hidden=HIDDEN, drop_site=drop_site),
        num_supernodes=settings.sites,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    return outcome.arrays, outcome.masked


def _plain_fedavg(settings: FlSettings, sites: list[int]) -> tuple[list[np.ndarray], list]:
    torch.set_num_threads(1)
    start = get_arrays(make_model(settings.seed, HIDDEN))
    data = load_sites(settings.data_root, settings.sites, settings.seed)
    outs, weights = [], []
    for i in sites:
        model = make_model(settings.seed, HIDDEN)
        local = TrainSettings(epochs=settings.epochs, lr=settings.lr)
        train_local(model, data[i].x_train, data[i].y_train, local, settings.seed * 1000 + 1)
        outs.append(get_arrays(model))
        weights.append(len(data[i].y_train))
    updates = [np.concatenate([(a - s).ravel() for a, s in zip(o, start)]) for o in outs]
    return fedavg(outs, weights), updates


@pytest.mark.slow
def test_secagg_equals_fedavg_and_hides_each_site(shared_data: Path, tmp_path: Path) -> None:
    settings = FlSettings(shared_data / "uci_heart_disease", tmp_path, sites=3, rounds=1, epochs=1)
    arrays, masked = _run(settings, drop_site=None)
    expected, updates = _plain_fedavg(settings, [0, 1, 2])
    err = max(float(np.abs(a - e).max()) for a, e in zip(arrays, expected, strict=True))
    assert err < QUANT_TOL
    assert len(masked) == 3
    for vec in masked.values():  # [weight, weight * params...] masked, as the server got it
        flat = np.concatenate([v.ravel() for v in vec]).astype(np.float64)[1:]
        best = max(abs(float(np.corrcoef(flat, u)[0, 1])) for u in updates)
        assert best < 0.05


@pytest.mark.slow
def test_secagg_round_completes_when_a_site_drops(shared_data: Path, tmp_path: Path) -> None:
    settings = FlSettings(shared_data / "uci_heart_disease", tmp_path, sites=3, rounds=1, epochs=1)
    arrays, masked = _run(settings, drop_site=2)
    expected, _ = _plain_fedavg(settings, [0, 1])
    assert len(masked) == 2
    err = max(float(np.abs(a - e).max()) for a, e in zip(arrays, expected, strict=True))
    assert err < QUANT_TOL
