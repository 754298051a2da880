"""Per-round, per-site and global metrics of a federated run: CSV, curves PNG, final model."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medverse.federated.dp import epsilon_spent
from medverse.federated.settings import FlSettings
from medverse.io.atomic import atomic_path

log = logging.getLogger(__name__)
FIELDS = ("round", "site", "loss", "auroc", "accuracy", "num_examples")


@dataclass
class RoundLog:
    """Collects each round's evaluation metrics per site and their example-weighted mean."""

    site_names: Sequence[str]
    rows: list[dict[str, object]] = field(default_factory=list)
    round: int = 0

    def add_round(self, site_metrics: Sequence[Mapping[str, float]]) -> dict[str, float]:
        """Record one round (one metrics mapping per site); return the weighted global row."""
        self.round += 1
        weights = np.array([m["num-examples"] for m in site_metrics], dtype=np.float64)
        for m in sorted(site_metrics, key=lambda m: m["site-index"]):
            name = self.site_names[int(m["site-index"])]
            self.rows.append(self._row(name, m))
        means = {
            key: float(np.average([m[key] for m in site_metrics], weights=weights))
            for key in ("loss", "auroc", "accuracy")
        }
        means["num-examples"] = float(weights.sum())
        self.rows.append(self._row("global", means))
        log.info(
            "round %d: global loss %.4f, AUROC %.4f (%s)",
            self.round,
            means["loss"],
            means["auroc"],
            ", ".join(
                f"{r['site']} {r['auroc']:.3f}" for r in self.rows[-len(site_metrics) - 1 : -1]
            ),
        )
        return means

    def _row(self, site: str, m: Mapping[str, float]) -> dict[str, object]:
        return {
            "round": self.round,
            "site": site,
            "loss": round(float(m["loss"]), 6),
            "auroc": round(float(m["auroc"]), 6),
            "accuracy": round(float(m["accuracy"]), 6),
            "num_examples": int(m["num-examples"]),
        }

    def write_csv(self, path: Path) -> Path:
        """Write every row (per site and ``global``) to ``path``."""
        with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        return path

    def plot(self, path: Path) -> Path:
        """Draw held-out loss and AUROC per round, one line per site plus the global mean."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for site in [*self.site_names, "global"]:
            rows = [r for r in self.rows if r["site"] == site]
            xs = [r["round"] for r in rows]
            style = {"linewidth": 2.5, "color": "black"} if site == "global" else {}
            for ax, key in zip(axes, ("loss", "auroc"), strict=True):
                ax.plot(xs, [r[key] for r in rows], marker="o", label=site, **style)
        for ax, key in zip(axes, ("held-out loss", "held-out AUROC"), strict=True):
            ax.set_xlabel("round")
            ax.set_title(key)
        axes[1].legend()
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return path


def write_privacy(settings: FlSettings, path: Path) -> Path:
    """Write the (epsilon, delta) the run spent, from dp_accounting's RDP accountant."""
    eps = epsilon_spent(settings.dp_noise, settings.rounds, settings.dp_delta)
    report = {
        "noise_multiplier": settings.dp_noise,
        "clipping_norm": settings.dp_clip,
        "rounds": settings.rounds,
        "sites_per_round": settings.sites,
        "delta": settings.dp_delta,
        "epsilon": eps if np.isfinite(eps) else None,
        "accountant": "dp_accounting RdpAccountant, one GaussianDpEvent per round (site level)",
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    log.info("privacy: epsilon %s at delta %g", report["epsilon"], settings.dp_delta)
    return path


def save_global_model(
    state: Mapping[str, torch.Tensor], meta: Mapping[str, object], path: Path
) -> Path:
    """Save the final global model as a torch file: ``{"format", "state_dict", "meta"}``."""
    payload = {"format": "medverse-fl-heart", "state_dict": dict(state), "meta": dict(meta)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
