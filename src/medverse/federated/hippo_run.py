"""Run the hippocampus task federated (in-process Flower) or pooled, and write its outputs."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medverse.federated.dp import epsilon_spent
from medverse.federated.hippo_data import PRESET, HippoFederation, load_federation
from medverse.federated.hippo_log import HippoRoundLog
from medverse.federated.hippo_settings import HippoSettings, Uplink
from medverse.federated.hippo_task import (
    LocalSteps,
    PatchSource,
    make_network,
    make_optimiser,
    train_local,
)
from medverse.io.atomic import atomic_path
from medverse.models.checkpoint import save_checkpoint

CHECKPOINT = "global_model.pt"


@dataclass
class HippoRunResult:
    """What one run produced: final Dice, traffic, time, privacy, and where its files are."""

    name: str
    dice: float
    dice_per_label: dict[str, float]
    total_steps: int
    sequential_steps: int
    rounds: int
    uplink_bytes_per_site_round: float
    seconds_per_round: float
    cpu_seconds: float
    epsilon: float | None
    out_dir: Path
    rows: list[dict[str, object]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The result as plain JSON values (rows left out)."""
        return {
            "name": self.name,
            "dice": round(self.dice, 4),
            "dice_per_label": {k: round(v, 4) for k, v in self.dice_per_label.items()},
            "total_steps": self.total_steps,
            "sequential_steps": self.sequential_steps,
            "rounds": self.rounds,
            "uplink_bytes_per_site_round": round(self.uplink_bytes_per_site_round),
            "uplink_bytes_per_site_run": round(self.uplink_bytes_per_site_round * self.rounds),
            "seconds_per_round": round(self.seconds_per_round, 2),
            "cpu_seconds": round(self.cpu_seconds, 1),
            "epsilon": self.epsilon,
            "out_dir": str(self.out_dir),
        }


def _quiet_flower() -> None:
    for key, value in {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}.items():
        os.environ.setdefault(key, value)


def _load(settings: HippoSettings) -> HippoFederation:
    return load_federation(
        settings.data_root, settings.sites, settings.split, settings.seed,
        settings.max_train, settings.max_validation,
    )  # fmt: skip


def run_federated(
    settings: HippoSettings, name: str, fed: HippoFederation | None = None
) -> HippoRunResult:
    """Train the hippocampus task across the sites with Flower's apps, in this process.

    Every site is checked before round 1 (``SiteDataError`` naming the site). Writes
    ``metrics.csv``, ``curves.png``, ``global_model.pt`` (a medverse checkpoint) and
    ``privacy.json`` into ``settings.out_dir``.
    """
    _quiet_flower()
    from medverse.federated.app.hippo_apps import build_hippo_client_app, build_hippo_server_app
    from medverse.federated.app.hippo_secagg import (
        build_hippo_secagg_client_app,
        build_hippo_secagg_server_app,
    )
    from medverse.federated.inprocess import run_in_process

    fed = fed or _load(settings)
    log = HippoRoundLog([s.name for s in fed.sites])
    final: dict[str, Any] = {}
    tick = time.process_time()
    if settings.uplink == Uplink.DENSE:
        server = build_hippo_server_app(fed, settings, log, final)
        client = build_hippo_client_app(fed, settings)
    else:
        server = build_hippo_secagg_server_app(fed, settings, log, final)
        client = build_hippo_secagg_client_app(fed, settings)
    grid = run_in_process(server, client, settings.sites)
    if not any(r["site"] != "global" for r in log.rows):  # SecAgg+: sites report no metrics
        for rnd in range(1, settings.rounds + 1):
            log.add_sites(rnd, [{"site-index": i} for i in range(settings.sites)])
    log.set_uplink(grid.traffic.uplink)
    rounds = [str(r) for r in range(1, settings.rounds + 1)]
    uplink = grid.traffic.uplink_per_site_round(rounds)
    eps = epsilon_spent(settings.dp_noise, settings.rounds, settings.dp_delta)
    epsilon = float(eps) if np.isfinite(eps) else None
    return _finish(name, settings, fed, log, final["state"], uplink, tick, epsilon)


def run_pooled(
    settings: HippoSettings, name: str, fed: HippoFederation | None = None
) -> HippoRunResult:
    """The baseline: one model on all sites' training cases together.

    ``sequential_steps`` AdamW steps (one optimiser for the whole run) of ``pooled_batch``
    patches (``batch_size`` unless set): the federated run's steps along the model's path.
    Validated after every ``local_steps`` steps, so its curve has one point per round.
    """
    from medverse.federated.app.hippo_apps import global_evaluator

    fed = fed or _load(settings)
    torch.set_num_threads(1)
    log = HippoRoundLog(["pooled"])
    tick = time.process_time()
    network = make_network(fed.plan, settings.seed)
    optimiser = make_optimiser(network, settings.lr)
    source = PatchSource([c for s in fed.sites for c in s.cached], fed.plan, settings.seed)
    batch = settings.pooled_batch or settings.batch_size
    local = LocalSteps(settings.local_steps, batch, settings.lr)
    evaluate = global_evaluator(fed, settings, log)
    evaluate(0, network.state_dict())
    n = float(sum(s.num_examples for s in fed.sites))
    for rnd in range(1, settings.rounds + 1):
        first = (rnd - 1) * settings.local_steps * batch
        loss = train_local(network, source, local, first, optimiser)
        log.add_sites(rnd, [{"site-index": 0, "train_loss": loss, "num-examples": n}])
        evaluate(rnd, network.state_dict())
    return _finish(name, settings, fed, log, network.state_dict(), 0.0, tick, None)


def _finish(
    name: str,
    settings: HippoSettings,
    fed: HippoFederation,
    log: HippoRoundLog,
    state: dict[str, torch.Tensor],
    uplink: float,
    cpu_start: float,
    epsilon: float | None,
) -> HippoRunResult:
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    log.write_csv(out / "metrics.csv")
    title = f"{name} ({settings.sequential_steps} steps along the model's path)"
    log.plot(out / "curves.png", title)
    network = make_network(fed.plan, settings.seed)
    network.load_state_dict(state)
    last = log.global_rows()[-1]
    extra = {"federated_run": name, "dice": float(str(last["dice"])), "rounds": settings.rounds}
    save_checkpoint(out / CHECKPOINT, network, fed.plan, preset=PRESET, labels=fed.plan.labels,
                    extra=extra)  # fmt: skip
    privacy = {
        "noise_multiplier": settings.dp_noise, "clipping_norm": settings.dp_clip,
        "rounds": settings.rounds, "delta": settings.dp_delta, "epsilon": epsilon,
        "accountant": "dp_accounting RdpAccountant, one GaussianDpEvent per round (site level)",
    }  # fmt: skip
    with atomic_path(out / "privacy.json") as tmp:
        tmp.write_text(json.dumps(privacy, indent=2))
    seconds = [float(str(r["seconds"])) for r in log.global_rows()[1:]]
    return HippoRunResult(
        name=name,
        dice=float(str(last["dice"])),
        dice_per_label={k: float(str(last[k])) for k in ("dice_anterior", "dice_posterior")},
        total_steps=settings.total_steps,
        sequential_steps=settings.sequential_steps,
        rounds=settings.rounds,
        uplink_bytes_per_site_round=uplink,
        seconds_per_round=float(np.mean(seconds)) if seconds else 0.0,
        cpu_seconds=time.process_time() - cpu_start,
        epsilon=epsilon,
        out_dir=out,
        rows=log.rows,
    )
