"""SecAgg+ for the hippocampus task (flwr 1.41's legacy path): dense, or Top-K with shared indices.

Top-K under SecAgg+: additive masks cancel only if every site sends the same coordinates, so
the server picks one index set per round from public data only: the ``k (1 - random_share)``
largest entries of the last round's public aggregate update plus a share drawn with a generator
seeded by ``(seed, round)`` (``topk.shared_indices``), and sends it with the round's
instructions. Each site sends its update + residual at those coordinates, masked; the rest stays
at the site as its residual (error feedback, in the site's ``Context.state``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Context
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import FitIns, FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid, ServerApp

from medverse.federated.app.hippo_apps import SiteTrainer, global_evaluator
from medverse.federated.app.packing import MODULUS, packing_mod
from medverse.federated.guard import check_outbound
from medverse.federated.hippo_data import HippoFederation
from medverse.federated.hippo_log import HippoRoundLog
from medverse.federated.hippo_settings import HippoSettings, TopKRule, Uplink
from medverse.federated.hippo_task import flat_parameters, make_network, unflatten
from medverse.federated.topk import AgeRateSelector, ErrorFeedback, densify, shared_indices

INDICES_KEY = "topk-indices"
TOPK_CLIP = 2.0  # SecAgg+ clipping range for Top-K values (updates, not weights): finer steps


class _HippoClient(NumPyClient):
    def __init__(self, trainer: SiteTrainer, index: int, context: Context) -> None:
        self.trainer, self.index, self.state = trainer, index, context.state
        self.keys = list(make_network(trainer.fed.plan, 0).state_dict())

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[Any, int, dict]:
        start = {k: torch.as_tensor(a) for k, a in zip(self.keys, parameters, strict=True)}
        rnd = int(config.get("server-round", 1))
        network, _ = self.trainer.train(self.index, start, rnd, 0.0, self.state)
        site = self.trainer.site(self.index)
        if INDICES_KEY not in config:  # dense SecAgg+: the weights, masked by the mod
            arrays = [v.numpy() for v in network.state_dict().values()]
            shapes = {str(i): a.shape for i, a in enumerate(arrays)}
            check_outbound(site.name, {str(i): a for i, a in enumerate(arrays)}, {}, shapes)
            return arrays, site.num_examples, {}
        indices = np.frombuffer(bytes(config[INDICES_KEY]), dtype=np.int32)
        update = flat_parameters(network.state_dict()) - flat_parameters(start)
        feedback = self._feedback(update.size)
        values = feedback.compress_shared(update, indices)
        self.state.array_records["residual"] = ArrayRecord({"r": Array(feedback.residual)})
        check_outbound(site.name, {"values": values}, {}, {}, masked_length=len(indices))
        return [values], site.num_examples, {}

    def _feedback(self, size: int) -> ErrorFeedback:
        feedback = ErrorFeedback(size, decay=self.trainer.settings.residual_decay)
        if "residual" in self.state.array_records:
            feedback.residual = self.state.array_records["residual"]["r"].numpy().copy()
        return feedback


def build_hippo_secagg_client_app(fed: HippoFederation, settings: HippoSettings) -> ClientApp:
    """A ClientApp behind ``secaggplus_mod``: dense weights, or Top-K values when asked."""
    trainer = SiteTrainer(fed, settings)

    def client_fn(context: Context) -> Any:
        index = int(str(context.node_config["partition-id"]))
        return _HippoClient(trainer, index, context).to_client()

    return ClientApp(client_fn=client_fn, mods=[packing_mod(MODULUS), secaggplus_mod])


class SharedTopKFedAvg(LegacyFedAvg):
    """FedAvg over Top-K values at one shared index set per round (for SecAgg+).

    The SecAgg+ workflow hands ``aggregate_fit`` the unmasked weighted mean of the sites'
    value vectors; the global model moves by that mean at the round's indices.
    """

    def __init__(
        self, like: Mapping[str, torch.Tensor], fraction: float, random_share: float, seed: int,
        rule: TopKRule = TopKRule.LAST_AGGREGATE, **kw: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kw)
        self.like = like
        self.global_flat = flat_parameters(like)
        self.last_update = np.zeros_like(self.global_flat)  # public: last round's aggregate
        self.k = max(1, round(fraction * self.global_flat.size))
        self.random_share, self.seed = random_share, seed
        self.indices = np.zeros(0, dtype=np.int64)
        self.selector: AgeRateSelector | None = None
        if rule == TopKRule.AGE_RATE:
            sizes = [int(v.numel()) for v in like.values()]
            self.selector = AgeRateSelector(sizes, self.k, random_share, seed)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Pick the round's shared indices and send them with every site's instructions."""
        if self.selector is not None:
            self.indices = self.selector.select(server_round)
        else:
            self.indices = shared_indices(
                self.last_update, self.k, self.random_share, self.seed, server_round
            )
        pairs = super().configure_fit(server_round, parameters, client_manager)
        for _, ins in pairs:
            ins.config[INDICES_KEY] = self.indices.astype(np.int32).tobytes()
        return pairs

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[Any],
    ) -> tuple[Parameters | None, dict[str, Any]]:
        """Apply the unmasked mean values at the round's indices to the global model."""
        if not results:
            return None, {}
        mean_values = parameters_to_ndarrays(results[0][1].parameters)[0].astype(np.float64)
        self.last_update = densify(self.indices, mean_values, self.global_flat.size)
        if self.selector is not None:
            self.selector.update(self.indices, mean_values)
        self.global_flat = self.global_flat + self.last_update
        return ndarrays_to_parameters(self.arrays()), {}

    def arrays(self) -> list[np.ndarray]:
        """The global model as arrays in state order (float32)."""
        return [v.numpy() for v in unflatten(self.global_flat, self.like).values()]


def build_hippo_secagg_server_app(
    fed: HippoFederation, settings: HippoSettings, log: HippoRoundLog, final: dict[str, Any]
) -> ServerApp:
    """A ServerApp running SecAgg+ FedAvg, dense or Top-K (``settings.uplink``)."""
    app = ServerApp()
    like = make_network(fed.plan, settings.seed).state_dict()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        evaluate = global_evaluator(fed, settings, log)

        def evaluate_fn(rnd: int, arrays: list[np.ndarray], _: dict) -> tuple[float, dict]:
            state = {k: torch.as_tensor(a) for k, a in zip(like, arrays, strict=True)}
            return 0.0, evaluate(rnd, state)

        n = settings.sites
        common: dict[str, Any] = {
            "fraction_evaluate": 0.0,
            "min_fit_clients": n,
            "min_available_clients": n,
            "on_fit_config_fn": lambda r: {"server-round": r},
            "initial_parameters": ndarrays_to_parameters([v.numpy() for v in like.values()]),
            "evaluate_fn": evaluate_fn,
        }
        strategy: LegacyFedAvg
        clip = 8.0
        if settings.uplink == Uplink.TOPK_SECAGG:
            strategy = SharedTopKFedAvg(
                like,
                settings.topk_fraction,
                settings.random_share,
                settings.seed,
                settings.topk_rule,
                **common,
            )
            clip = TOPK_CLIP
        else:
            strategy = LegacyFedAvg(**common)
        legacy = LegacyContext(
            context=context, config=ServerConfig(settings.rounds), strategy=strategy
        )
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(
                num_shares=1.0,
                reconstruction_threshold=0.6,
                clipping_range=clip,
                modulus_range=MODULUS,
            )
        )
        workflow(grid, legacy)
        record = legacy.state.array_records[MAIN_PARAMS_RECORD]
        final["state"] = {
            k: torch.as_tensor(a.numpy()) for k, a in zip(like, record.values(), strict=True)
        }

    return app
