"""Server-side checks: a reply whose arrays do not have the model's shapes is dropped and logged."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx

log = logging.getLogger(__name__)


def keep_model_shaped(
    replies: Iterable[Message], shapes: Mapping[str, tuple[int, ...]], server_round: int
) -> list[Message]:
    """Replies whose ``arrays`` match ``shapes`` key by key (error replies pass through).

    Every rejected reply is logged with its node id, what it sent and what was expected.
    """
    kept = []
    for msg in replies:
        if msg.has_error():
            kept.append(msg)
            continue
        records = msg.content.array_records
        got = (
            {k: tuple(a.numpy().shape) for k, a in records["arrays"].items()}
            if "arrays" in records
            else {}
        )
        if got != dict(shapes):
            log.warning(
                "round %d: rejected the update of node %d: shapes %s, expected %s",
                server_round, msg.metadata.src_node_id, got, dict(shapes),
            )  # fmt: skip
            continue
        kept.append(msg)
    return kept


class CheckedFedAvg(FedAvg):
    """FedAvg that aggregates only model-shaped updates."""

    shapes: Mapping[str, tuple[int, ...]] = {}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop wrong-shaped replies (logged), then aggregate the rest as FedAvg does."""
        return super().aggregate_train(
            server_round, keep_model_shaped(replies, self.shapes, server_round)
        )


class CheckedFedProx(FedProx):
    """FedProx that aggregates only model-shaped updates."""

    shapes: Mapping[str, tuple[int, ...]] = {}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop wrong-shaped replies (logged), then aggregate the rest as FedProx does."""
        return super().aggregate_train(
            server_round, keep_model_shaped(replies, self.shapes, server_round)
        )


class CheckedFedAvgM(FedAvgM):
    """FedAvg with a server step size and momentum (FedAvgM), over model-shaped updates only."""

    shapes: Mapping[str, tuple[int, ...]] = {}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop wrong-shaped replies (logged), then take FedAvgM's server step."""
        return super().aggregate_train(
            server_round, keep_model_shaped(replies, self.shapes, server_round)
        )
