"""Settings of a federated heart run, read from Flower's run config or given by the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from medverse.core.errors import ConfigError


class Strategy(StrEnum):
    """Server-side aggregation strategies."""

    FEDAVG = "fedavg"
    FEDPROX = "fedprox"


@dataclass(frozen=True)
class FlSettings:
    """One federated run: where the data is, how many sites and rounds, and the strategy."""

    data_root: Path
    out_dir: Path
    sites: int = 4
    rounds: int = 5
    strategy: Strategy = Strategy.FEDAVG
    mu: float = 0.1
    epochs: int = 2
    lr: float = 0.01
    seed: int = 0
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    min_nodes: int = 0  # sites a round needs; 0 = every site (a deployment may tolerate fewer)

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.epochs < 1:
            raise ConfigError(f"rounds and epochs must be >= 1, got {self.rounds}, {self.epochs}")
        if not 2 <= self.sites <= 4:
            raise ConfigError(f"the heart task runs with 2-4 sites, got {self.sites}")
        if self.dp_noise < 0 or self.dp_clip <= 0:
            raise ConfigError(
                f"DP needs noise >= 0 and clip > 0, got {self.dp_noise}, {self.dp_clip}"
            )
        if not 0 <= self.min_nodes <= self.sites:
            raise ConfigError(f"min-nodes must be 0-{self.sites} (sites), got {self.min_nodes}")

    def to_run_config(self) -> dict[str, str | int | float]:
        """The settings as a flat Flower run config (kebab-case keys, plain values)."""
        flat = {k.replace("_", "-"): v for k, v in asdict(self).items()}
        return {k: str(v) if isinstance(v, Path | StrEnum) else v for k, v in flat.items()}

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> FlSettings:
        """Build settings from a Flower run config (``[tool.flwr.app.config]``)."""
        try:
            return cls(
                data_root=Path(str(config["data-root"])),
                out_dir=Path(str(config["out-dir"])),
                sites=int(str(config.get("sites", 4))),
                rounds=int(str(config.get("rounds", 5))),
                strategy=Strategy(str(config.get("strategy", "fedavg"))),
                mu=float(str(config.get("mu", 0.1))),
                epochs=int(str(config.get("epochs", 2))),
                lr=float(str(config.get("lr", 0.01))),
                seed=int(str(config.get("seed", 0))),
                dp_noise=float(str(config.get("dp-noise", 0.0))),
                dp_clip=float(str(config.get("dp-clip", 1.0))),
                dp_delta=float(str(config.get("dp-delta", 1e-5))),
                min_nodes=int(str(config.get("min-nodes", 0))),
            )
        except (KeyError, ValueError) as error:
            raise ConfigError(f"federated run config is incomplete or invalid: {error}") from error
