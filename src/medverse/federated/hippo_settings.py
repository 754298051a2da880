"""Settings of a federated hippocampus run (sites, budget, strategy, SecAgg+, Top-K, DP)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from medverse.core.errors import ConfigError
from medverse.federated.hippo_data import SiteSplit
from medverse.federated.settings import Strategy


class Uplink(StrEnum):
    """What a site sends: dense weights in the clear, under SecAgg+, or Top-K under SecAgg+."""

    DENSE = "dense"
    SECAGG = "secagg"
    TOPK_SECAGG = "topk-secagg"


class TopKRule(StrEnum):
    """How the server picks the shared Top-K indices (public data only, see ``topk``)."""

    LAST_AGGREGATE = "last-aggregate"  # largest entries of last round's aggregate + random
    AGE_RATE = "age-rate"  # largest expected pending size (rate x rounds unsent) + random


class SiteOptimiser(StrEnum):
    """A site's AdamW moments: kept across rounds in its Context.state, or restarted each round."""

    KEEP = "keep"
    FRESH = "fresh"


@dataclass(frozen=True)
class HippoSettings:
    """One federated hippocampus run.

    The budget: every site takes ``local_steps`` optimiser steps of ``batch_size`` patches per
    round, ``rounds * local_steps`` steps in all (``sequential_steps``: the steps along the
    model's path), and the sites together ``rounds * sites * local_steps`` (``total_steps``).
    The pooled baseline takes the same ``sequential_steps`` steps on all training cases
    together, each of ``pooled_batch`` patches: ``batch_size`` by default (the same steps of
    the same size as each site: the sites see ``sites`` times the patches, in parallel), or
    ``sites * batch_size`` (the same patches in all).
    """

    data_root: Path
    out_dir: Path
    sites: int = 4
    split: SiteSplit = SiteSplit.IID
    rounds: int = 4
    local_steps: int = 15
    batch_size: int = 2
    lr: float = 2e-3
    site_optimiser: SiteOptimiser = SiteOptimiser.FRESH
    pooled_batch: int | None = None
    server_lr: float = 1.0
    server_momentum: float = 0.0
    strategy: Strategy = Strategy.FEDAVG
    mu: float = 0.01
    seed: int = 0
    uplink: Uplink = Uplink.DENSE
    topk_fraction: float = 0.01
    random_share: float = 0.5
    topk_rule: TopKRule = TopKRule.AGE_RATE
    residual_decay: float = 0.95
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    max_train: int | None = None
    max_validation: int | None = None

    def __post_init__(self) -> None:
        if min(self.rounds, self.local_steps, self.batch_size, self.pooled_batch or 1) < 1:
            raise ConfigError("rounds, local steps and batch size must be >= 1")
        if not 2 <= self.sites <= 4:
            raise ConfigError(f"the hippocampus task runs with 2-4 sites, got {self.sites}")
        if not 0 < self.topk_fraction <= 1 or not 0 <= self.random_share <= 1:
            raise ConfigError("topk fraction must be in (0, 1] and random share in [0, 1]")
        if not 0 < self.residual_decay <= 1:
            raise ConfigError(f"residual decay must be in (0, 1], got {self.residual_decay}")
        if self.server_lr <= 0 or not 0 <= self.server_momentum < 1:
            raise ConfigError("server step size must be > 0 and server momentum in [0, 1)")
        if self.dp_noise < 0 or self.dp_clip <= 0:
            raise ConfigError(f"DP needs noise >= 0 and clip > 0, got {self.dp_noise}")
        if self.dp_noise > 0 and self.uplink != Uplink.DENSE:
            raise ConfigError("central DP is offered on the dense uplink only")

    @property
    def total_steps(self) -> int:
        """Local optimiser steps of the whole run, all sites together."""
        return self.rounds * self.sites * self.local_steps

    @property
    def sequential_steps(self) -> int:
        """Optimiser steps along the model's path: each site's steps, and the pooled run's."""
        return self.rounds * self.local_steps
