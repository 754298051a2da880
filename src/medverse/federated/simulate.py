"""Run the federated heart task on one machine with Flower's simulation engine (Ray)."""

from __future__ import annotations

import csv
import os
import tempfile

from medverse.federated.heart_data import load_sites
from medverse.federated.settings import FlSettings

# Keep Flower and Ray offline and out of the home folder.
_QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def simulate(settings: FlSettings) -> list[dict[str, str]]:
    """Simulate ``settings.sites`` hospitals for ``settings.rounds`` rounds; return the CSV rows.

    Every site's data is checked before round 1 (a bad site raises ``SiteDataError``). Writes
    ``metrics.csv``, ``curves.png`` and ``global_model.pt`` into ``settings.out_dir``.
    """
    load_sites(settings.data_root, settings.sites, settings.seed)  # fail before any round
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("FLWR_HOME", tempfile.mkdtemp(prefix="medverse-flwr-"))
    from flwr.simulation import run_simulation

    from medverse.federated.app.client_app import build_client_app
    from medverse.federated.app.server_app import build_server_app

    run_simulation(
        server_app=build_server_app(settings),
        client_app=build_client_app(settings),
        num_supernodes=settings.sites,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "include_dashboard": False},
        },
    )
    with (settings.out_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))
