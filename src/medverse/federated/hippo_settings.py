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


@dataclass(frozen=True)
class HippoSettings:
    """One federated hippocampus run.

    The budget: every site takes ``local_steps`` optimiser steps of ``batch_size`` patches per
    round, so the run's total local steps are ``rounds * sites * local_steps`` (the pooled
    baseline takes that many steps on all training cases together).
    """

    data_root: Path
    out_dir: Path
    sites: int = 4
    split: SiteSplit = SiteSplit.IID
    rounds: int = 4
    local_steps: int = 15
    batch_size: int = 2
    lr: float = 2e-3
    strategy: Strategy = Strategy.FEDAVG
    mu: float = 0.01
    seed: int = 0
    uplink: Uplink = Uplink.DENSE
    topk_fraction: float = 0.01
    random_share: float = 0.5
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    max_train: int | None = None
    max_validation: int | None = None

    def __post_init__(self) -> None:
        if min(self.rounds, self.local_steps, self.batch_size) < 1:
            raise ConfigError("rounds, local steps and batch size must be >= 1")
        if not 2 <= self.sites <= 4:
            raise ConfigError(f"the hippocampus task runs with 2-4 sites, got {self.sites}")
        if not 0 < self.topk_fraction <= 1 or not 0 <= self.random_share <= 1:
            raise ConfigError("topk fraction must be in (0, 1] and random share in [0, 1]")
        if self.dp_noise < 0 or self.dp_clip <= 0:
            raise ConfigError(f"DP needs noise >= 0 and clip > 0, got {self.dp_noise}")
        if self.dp_noise > 0 and self.uplink != Uplink.DENSE:
            raise ConfigError("central DP is offered on the dense uplink only")

    @property
    def total_steps(self) -> int:
        """Local optimiser steps of the whole run, all sites together."""
        return self.rounds * self.sites * self.local_steps
