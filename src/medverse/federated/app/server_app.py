"""The Flower ServerApp: FedAvg or FedProx over the sites, metrics per round, final model saved."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
)
from flwr.serverapp.strategy import Strategy as Strategy_

from medverse.federated.app.checked import CheckedFedAvg, CheckedFedProx
from medverse.federated.app.common import metric_record
from medverse.federated.heart_data import HeartSiteName
from medverse.federated.heart_task import make_model
from medverse.federated.records import RoundLog, save_global_model, write_privacy
from medverse.federated.settings import FlSettings, Strategy


def _strategy(settings: FlSettings, log: RoundLog) -> Strategy_:
    def evaluate_aggr(records: list[RecordDict], weighting_key: str) -> MetricRecord:
        site_metrics = [
            {k: float(str(v)) for k, v in r.metric_records["metrics"].items()} for r in records
        ]
        return metric_record(log.add_round(site_metrics))

    n = settings.sites
    needed = settings.min_nodes or n  # a deployment may go on without a site that died
    common = {
        "min_train_nodes": needed,
        "min_evaluate_nodes": needed,
        "min_available_nodes": needed,
        "evaluate_metrics_aggr_fn": evaluate_aggr,
    }
    if settings.strategy == Strategy.FEDPROX:
        base: CheckedFedAvg | CheckedFedProx = CheckedFedProx(proximal_mu=settings.mu, **common)  # type: ignore[arg-type]
    else:
        base = CheckedFedAvg(**common)  # type: ignore[arg-type]
    model = make_model(settings.seed)
    base.shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if settings.dp_noise == 0:
        return base
    # Central DP: each site's update clipped to dp_clip, N(0, (noise * clip / n)^2) on the mean.
    return DifferentialPrivacyServerSideFixedClipping(
        base,
        noise_multiplier=settings.dp_noise,
        clipping_norm=settings.dp_clip,
        num_sampled_clients=n,
    )


def run_server(grid: Grid, settings: FlSettings) -> RoundLog:
    """Run all rounds on ``grid``; write metrics CSV, curves PNG and the global model."""
    names = [str(s) for s in list(HeartSiteName)[: settings.sites]]
    log = RoundLog(names)
    result = _strategy(settings, log).start(
        grid=grid,
        initial_arrays=ArrayRecord(make_model(settings.seed).state_dict()),
        num_rounds=settings.rounds,
        train_config=ConfigRecord({"lr": settings.lr}),
    )
    out = settings.out_dir
    log.write_csv(out / "metrics.csv")
    log.plot(out / "curves.png")
    meta = {**settings.to_run_config(), "sites_names": ",".join(names)}
    save_global_model(result.arrays.to_torch_state_dict(), meta, out / "global_model.pt")
    write_privacy(settings, out / "privacy.json")
    return log


def build_server_app(settings: FlSettings | None = None) -> ServerApp:
    """A ServerApp over the heart task; ``settings`` None reads them from the run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, settings or FlSettings.from_run_config(context.run_config))

    return app


app = build_server_app()
