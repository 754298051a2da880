"""The Flower ClientApp: one hospital trains locally and sends only guarded model updates."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from medverse.federated.app.common import metric_record
from medverse.federated.guard import check_outbound
from medverse.federated.heart_data import HeartSite, load_sites
from medverse.federated.heart_task import TrainSettings, evaluate, make_model, train_local
from medverse.federated.settings import FlSettings


@lru_cache(maxsize=4)
def _sites(root: Path, n_sites: int, seed: int) -> tuple[HeartSite, ...]:
    return tuple(load_sites(root, n_sites, seed))


def _local(settings: FlSettings, context: Context) -> tuple[int, HeartSite, torch.nn.Module]:
    index = int(str(context.node_config["partition-id"]))
    site = _sites(settings.data_root, settings.sites, settings.seed)[index]
    torch.set_num_threads(1)
    return index, site, make_model(settings.seed)


def _reply(msg: Message, site: str, model: torch.nn.Module, metrics: dict[str, float]) -> Message:
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    check_outbound(site, {k: v.numpy() for k, v in state.items()}, metrics, shapes)
    content = RecordDict({"arrays": ArrayRecord(state), "metrics": metric_record(metrics)})
    return Message(content=content, reply_to=msg)


def build_client_app(settings: FlSettings | None = None) -> ClientApp:
    """A ClientApp over the heart task; ``settings`` None reads them from the run config."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        s = settings or FlSettings.from_run_config(context.run_config)
        index, site, model = _local(s, context)
        model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
        config = msg.content.config_records["config"]
        mu = float(str(config.get("proximal-mu", 0.0)))
        rnd = int(str(config.get("server-round", 0)))
        local = TrainSettings(epochs=s.epochs, lr=s.lr, mu=mu)
        loss = train_local(model, site.x_train, site.y_train, local, seed=s.seed * 1000 + rnd)
        metrics = {"train_loss": loss, "num-examples": len(site.y_train), "site-index": index}
        return _reply(msg, site.name, model, metrics)

    @app.evaluate()
    def evaluate_(msg: Message, context: Context) -> Message:
        s = settings or FlSettings.from_run_config(context.run_config)
        index, site, model = _local(s, context)
        model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
        scores = evaluate(model, site.x_test, site.y_test)
        metrics = {**scores, "num-examples": len(site.y_test), "site-index": index}
        metrics = {k: float(np.nan_to_num(v)) for k, v in metrics.items()}
        content = RecordDict({"metrics": metric_record(metrics)})
        check_outbound(site.name, {}, metrics, {})
        return Message(content=content, reply_to=msg)

    return app


app = build_client_app()
