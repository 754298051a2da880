"""Run a Flower ServerApp and ClientApp in one process, counting the bytes every site sends.

Flower's simulation engine (Ray) starts a cluster and one worker per site; on a shared 2-core
box its start-up and per-message overhead are larger than the hippocampus task's rounds. This
Grid calls the same ClientApp (mods included, e.g. ``secaggplus_mod``) in this process, one site
after the other, each with its own persistent ``Context`` (as a SuperNode keeps it), and counts
each reply's serialised size (the protobuf a SuperNode would put on the wire).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=E0611
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

log = logging.getLogger(__name__)
_CLIENT_APP_ERROR = 2  # Flower's ErrorCode.CLIENT_APP_RAISED_EXCEPTION


@dataclass
class Traffic:
    """Serialised bytes each node sent (uplink) and received (downlink), per round (group id)."""

    uplink: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    downlink: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, table: dict[int, dict[str, int]], node: int, group: str, nbytes: int) -> None:
        """Add ``nbytes`` to ``node``'s total for round ``group``."""
        table[node][group] = table[node].get(group, 0) + nbytes

    def uplink_per_site_round(self, groups: Iterable[str]) -> float:
        """Mean uplink bytes per site per round over the rounds named in ``groups``."""
        wanted = set(groups)
        values = [b for per in self.uplink.values() for g, b in per.items() if g in wanted]
        return float(sum(values) / len(values)) if values else 0.0


class LocalGrid(Grid):
    """A Grid that delivers each message to the ClientApp of its node, in this process.

    Args:
        client_app: The ClientApp every node runs.
        node_configs: One node config per site (``partition-id`` etc.); node ids are 1..N.
        run_config: The run config both apps see.
    """

    def __init__(
        self,
        client_app: ClientApp,
        node_configs: list[dict[str, bool | float | int | str]],
        run_config: Mapping[str, bool | float | int | str],
    ) -> None:
        self._run = Run.create_empty(run_id=1)
        self.client_app = client_app
        self.contexts = {
            i + 1: Context(1, i + 1, dict(cfg), RecordDict(), dict(run_config))
            for i, cfg in enumerate(node_configs)
        }
        self._replies: dict[str, Message] = {}
        self.traffic = Traffic()
        self.client_seconds: dict[str, float] = defaultdict(float)

    def set_run(self, run: Run) -> None:
        """Use ``run``'s description (run id, config)."""
        self._run = run

    @property
    def run(self) -> Run:
        """The run this grid serves."""
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """A new instruction message (as Flower's own grids build it)."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """The sites' node ids."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message to its node's ClientApp now; keep the reply for pulling."""
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = uuid4().hex
            node = msg.metadata.dst_node_id
            group = _round_of(msg)
            received, nbytes = _over_the_wire(msg)
            self.traffic.add(self.traffic.downlink, node, group, nbytes)
            tick = time.process_time()
            reply = self._deliver(received)
            self.client_seconds[group] += time.process_time() - tick
            sent, nbytes = _over_the_wire(reply)
            self.traffic.add(self.traffic.uplink, node, group, nbytes)
            self._replies[msg.metadata.message_id] = sent
            ids.append(msg.metadata.message_id)
        return ids

    def _deliver(self, msg: Message) -> Message:
        context = self.contexts[msg.metadata.dst_node_id]
        try:
            return self.client_app(msg, context)
        except Exception as error:  # a site failing is a reply with an error, as in Flower
            log.warning("node %d failed: %s", msg.metadata.dst_node_id, error)
            return Message(Error(_CLIENT_APP_ERROR, str(error)), reply_to=msg)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies to ``message_ids`` (each handed out once)."""
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver and collect the replies (``timeout`` is not needed in one process)."""
        return list(self.pull_messages(list(self.push_messages(messages))))


def _round_of(msg: Message) -> str:
    """The round a message belongs to: its group id, else its config's ``server-round``."""
    if msg.metadata.group_id:
        return msg.metadata.group_id
    config = msg.content.config_records.get("config")
    return str(config.get("server-round", "")) if config is not None else ""


def _over_the_wire(msg: Message) -> tuple[Message, int]:
    """The message as the other side gets it (serialised and parsed: a copy) and its size."""
    wire = message_to_proto(msg).SerializeToString()
    return message_from_proto(ProtoMessage.FromString(wire)), len(wire)


def run_in_process(
    server_app: ServerApp,
    client_app: ClientApp,
    n_sites: int,
    run_config: Mapping[str, bool | float | int | str] | None = None,
) -> LocalGrid:
    """Run ``server_app`` against ``n_sites`` in-process sites; return the grid (traffic)."""
    config = dict(run_config or {})
    nodes: list[dict[str, bool | float | int | str]] = [
        {"partition-id": i, "num-partitions": n_sites} for i in range(n_sites)
    ]
    grid = LocalGrid(client_app, nodes, config)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    server_app(grid, Context(1, SUPERLINK_NODE_ID, {}, RecordDict(), config))
    return grid
