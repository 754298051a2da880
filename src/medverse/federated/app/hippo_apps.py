"""Flower ClientApp and ServerApp of the hippocampus task (Message API: FedAvg, FedProx, DP)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping
from flwr.serverapp.strategy import Strategy as Strategy_

from medverse.federated.app.checked import CheckedFedAvg, CheckedFedAvgM, CheckedFedProx
from medverse.federated.app.common import metric_record
from medverse.federated.guard import check_outbound
from medverse.federated.hippo_data import HippoFederation, HippoSite
from medverse.federated.hippo_log import HippoRoundLog
from medverse.federated.hippo_settings import HippoSettings, SiteOptimiser
from medverse.federated.hippo_task import (
    LocalSteps,
    PatchSource,
    make_network,
    make_optimiser,
    train_local,
    validation_dice,
)
from medverse.federated.settings import Strategy
from medverse.federated.site_optimiser import load_moments, save_moments


class SiteTrainer:
    """One site's local training, shared by the dense and the SecAgg+ client apps."""

    def __init__(self, fed: HippoFederation, settings: HippoSettings) -> None:
        self.fed, self.settings = fed, settings
        self._sources: dict[int, PatchSource] = {}

    def site(self, index: int) -> HippoSite:
        """The site with partition id ``index``."""
        return self.fed.sites[index]

    def train(
        self,
        index: int,
        state: dict[str, torch.Tensor],
        round_: int,
        mu: float,
        site_state: RecordDict,
    ) -> tuple[torch.nn.Module, dict[str, float]]:
        """Train site ``index`` from ``state`` for one round; return the network and metrics.

        ``site_state`` is the site's Context.state: with ``site_optimiser = keep`` the AdamW
        moments are read from and written back to it (they never leave the site).
        """
        s = self.settings
        torch.set_num_threads(1)
        network = make_network(self.fed.plan, s.seed)
        network.load_state_dict(state)
        site = self.site(index)
        if index not in self._sources:  # sample n of a site is fixed by (seed, site, n)
            self._sources[index] = PatchSource(site.cached, self.fed.plan, s.seed * 1000 + index)
        local = LocalSteps(s.local_steps, s.batch_size, s.lr, mu)
        first = (round_ - 1) * s.local_steps * s.batch_size
        optimiser = make_optimiser(network, s.lr)
        keep = s.site_optimiser == SiteOptimiser.KEEP
        if keep:
            load_moments(optimiser, site_state)
        loss = train_local(network, self._sources[index], local, first, optimiser)
        if keep:
            save_moments(optimiser, site_state)
        metrics = {
            "train_loss": loss,
            "num-examples": float(site.num_examples),
            "site-index": float(index),
            "server-round": float(round_),
        }
        return network, metrics


def build_hippo_client_app(fed: HippoFederation, settings: HippoSettings) -> ClientApp:
    """A ClientApp that trains its site's cases and sends guarded dense weights."""
    app = ClientApp()
    trainer = SiteTrainer(fed, settings)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        index = int(str(context.node_config["partition-id"]))
        config = msg.content.config_records["config"]
        state = msg.content.array_records["arrays"].to_torch_state_dict()
        network, metrics = trainer.train(
            index,
            state,
            int(str(config.get("server-round", 1))),
            float(str(config.get("proximal-mu", 0.0))),
            context.state,
        )
        out = network.state_dict()
        shapes = {k: tuple(v.shape) for k, v in out.items()}
        check_outbound(
            trainer.site(index).name, {k: v.numpy() for k, v in out.items()}, metrics, shapes
        )
        content = RecordDict({"arrays": ArrayRecord(out), "metrics": metric_record(metrics)})
        return Message(content=content, reply_to=msg)

    return app


def _strategy(fed: HippoFederation, s: HippoSettings, log: HippoRoundLog) -> Strategy_:
    def train_aggr(records: list[RecordDict], weighting_key: str) -> MetricRecord:
        site_metrics = [
            {k: float(str(v)) for k, v in r.metric_records["metrics"].items()} for r in records
        ]
        if site_metrics:
            log.add_sites(int(site_metrics[0]["server-round"]), site_metrics)
        return metric_record({"sites": float(len(site_metrics))})

    common: dict[str, Any] = {
        "fraction_evaluate": 0.0,  # validation is server-side, on the untouched cases
        "min_train_nodes": s.sites,
        "min_available_nodes": s.sites,
        "train_metrics_aggr_fn": train_aggr,
    }
    base: CheckedFedAvg | CheckedFedAvgM | CheckedFedProx
    if s.strategy == Strategy.FEDPROX:
        base = CheckedFedProx(proximal_mu=s.mu, **common)
    elif s.server_lr != 1.0 or s.server_momentum != 0.0:
        base = CheckedFedAvgM(
            server_learning_rate=s.server_lr, server_momentum=s.server_momentum, **common
        )
    else:
        base = CheckedFedAvg(**common)
    base.shapes = {
        k: tuple(v.shape) for k, v in make_network(fed.plan, s.seed).state_dict().items()
    }
    if s.dp_noise == 0:
        return base
    return DifferentialPrivacyServerSideFixedClipping(
        base, noise_multiplier=s.dp_noise, clipping_norm=s.dp_clip, num_sampled_clients=s.sites
    )


def global_evaluator(
    fed: HippoFederation, settings: HippoSettings, log: HippoRoundLog
) -> Callable[[int, dict[str, torch.Tensor]], dict[str, float]]:
    """Score a global state on the validation cases and log it as that round's global row."""
    network = make_network(fed.plan, settings.seed)

    def evaluate(round_: int, state: dict[str, torch.Tensor]) -> dict[str, float]:
        network.load_state_dict(state)
        scores = validation_dice(network, fed.validation, fed.plan)
        log.add_global(round_, scores)
        return scores

    return evaluate


def build_hippo_server_app(
    fed: HippoFederation, settings: HippoSettings, log: HippoRoundLog, final: dict[str, Any]
) -> ServerApp:
    """A ServerApp running FedAvg/FedProx (optionally central DP); ``final["state"]`` is set."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        evaluate = global_evaluator(fed, settings, log)

        def evaluate_fn(round_: int, arrays: ArrayRecord) -> MetricRecord:
            return metric_record(evaluate(round_, arrays.to_torch_state_dict()))

        initial = make_network(fed.plan, settings.seed).state_dict()
        result = _strategy(fed, settings, log).start(
            grid=grid,
            initial_arrays=ArrayRecord(initial),
            num_rounds=settings.rounds,
            evaluate_fn=evaluate_fn,
        )
        final["state"] = result.arrays.to_torch_state_dict()

    return app
