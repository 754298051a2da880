"""SecAgg+ over the heart task through Flower's legacy path (the only one flwr 1.41 supports).

Server: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` called with a ``LegacyContext``
around ``flwr.server.strategy.FedAvg``; client: a ``NumPyClient`` behind ``secaggplus_mod``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from flwr.app import Context, Message
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import Key
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid, ServerApp

from medverse.federated.app.packing import MODULUS, packing_mod
from medverse.federated.guard import check_outbound
from medverse.federated.heart_data import load_sites
from medverse.federated.heart_task import (
    TrainSettings,
    get_arrays,
    make_model,
    set_arrays,
    train_local,
)
from medverse.federated.settings import FlSettings


class SiteDroppedError(RuntimeError):
    """Raised by a site told to drop out mid-round (after SecAgg+ key setup)."""


class _HeartClient(NumPyClient):
    def __init__(self, settings: FlSettings, index: int, hidden: int, drop: bool) -> None:
        self.settings, self.drop = settings, drop
        self.site = load_sites(settings.data_root, settings.sites, settings.seed)[index]
        self.model = make_model(settings.seed, hidden)

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[Any, int, dict]:
        if self.drop:
            raise SiteDroppedError(f"site {self.site.name} dropped out mid-round")
        torch.set_num_threads(1)
        set_arrays(self.model, parameters)
        rnd = int(config.get("server-round", 1))
        s = self.settings
        local = TrainSettings(epochs=s.epochs, lr=s.lr)
        train_local(self.model, self.site.x_train, self.site.y_train, local, s.seed * 1000 + rnd)
        arrays = get_arrays(self.model)
        shapes = {str(i): a.shape for i, a in enumerate(arrays)}
        check_outbound(self.site.name, {str(i): a for i, a in enumerate(arrays)}, {}, shapes)
        return arrays, len(self.site.y_train), {}


def build_secagg_client_app(
    settings: FlSettings, hidden: int = 16, drop_site: int | None = None
) -> ClientApp:
    """A ClientApp masked by ``secaggplus_mod``; site ``drop_site`` fails in stage 2."""

    def client_fn(context: Context) -> Any:
        index = int(str(context.node_config["partition-id"]))
        return _HeartClient(settings, index, hidden, index == drop_site).to_client()

    return ClientApp(client_fn=client_fn, mods=[packing_mod(MODULUS), secaggplus_mod])


@dataclass
class ObservingGrid:
    """A Grid that forwards everything and keeps the masked vectors the server receives."""

    grid: Grid
    masked: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)

    def send_and_receive(self, messages: Iterable[Message], **kwargs: Any) -> Iterable[Message]:
        """Forward to the real grid and record every masked-parameter reply by source node."""
        replies = list(self.grid.send_and_receive(messages, **kwargs))
        for reply in replies:
            if reply.has_error():
                continue
            for record in reply.content.config_records.values():
                if Key.MASKED_PARAMETERS in record:
                    blobs = cast(list[bytes], record[Key.MASKED_PARAMETERS])
                    vec = [bytes_to_ndarray(b) for b in blobs]
                    self.masked[reply.metadata.src_node_id] = vec
        return replies


@dataclass
class SecAggOutcome:
    """What a SecAgg+ run produced: the global arrays and what the server saw per node."""

    arrays: list[np.ndarray] = field(default_factory=list)
    masked: dict[int, list[np.ndarray]] = field(default_factory=dict)


def build_secagg_server_app(
    settings: FlSettings, outcome: SecAggOutcome, hidden: int = 16, shares: float = 1.0,
    threshold: float = 0.6,
) -> ServerApp:  # fmt: skip
    """A ServerApp running SecAgg+ FedAvg; fills ``outcome`` (same process as the server)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from flwr.common import ndarrays_to_parameters

        n = settings.sites
        strategy = LegacyFedAvg(
            fraction_evaluate=0.0,
            min_fit_clients=n,  # sample every site even if some register late
            min_available_clients=n,
            on_fit_config_fn=lambda r: {"server-round": r},
            initial_parameters=ndarrays_to_parameters(
                get_arrays(make_model(settings.seed, hidden))
            ),
        )
        legacy = LegacyContext(
            context=context, config=ServerConfig(settings.rounds), strategy=strategy
        )
        observing = ObservingGrid(grid)
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=shares, reconstruction_threshold=threshold, modulus_range=MODULUS
            )
        )
        workflow(observing, legacy)  # type: ignore[arg-type]
        record = legacy.state.array_records[MAIN_PARAMS_RECORD]
        outcome.arrays = [a.numpy() for a in record.values()]
        outcome.masked = observing.masked

    return app
