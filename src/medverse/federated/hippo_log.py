"""Per-round log of a hippocampus run: site rows (loss, bytes sent) and a global row (Dice)."""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medverse.io.atomic import atomic_path

log = logging.getLogger(__name__)
FIELDS = (
    "round", "site", "train_loss", "num_examples", "uplink_bytes", "dice", "dice_anterior",
    "dice_posterior", "seconds",
)  # fmt: skip


@dataclass
class HippoRoundLog:
    """Rows per round: one per site (training loss, bytes sent) and one ``global`` (Dice)."""

    site_names: Sequence[str]
    rows: list[dict[str, object]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    last_tick: float = field(default_factory=time.monotonic)

    def add_sites(self, round_: int, site_metrics: Sequence[Mapping[str, float]]) -> None:
        """Record each site's training metrics for ``round_`` (keys ``site-index`` etc.)."""
        for m in sorted(site_metrics, key=lambda m: m["site-index"]):
            self.rows.append(
                {
                    "round": round_,
                    "site": self.site_names[int(m["site-index"])],
                    "train_loss": round(float(m.get("train_loss", float("nan"))), 6),
                    "num_examples": int(m.get("num-examples", 0)),
                }
            )

    def add_global(self, round_: int, scores: Mapping[str, float]) -> None:
        """Record the global model's validation scores after ``round_`` (0 = initial)."""
        now = time.monotonic()
        row: dict[str, object] = {"round": round_, "site": "global"}
        row.update({k: round(float(v), 6) for k, v in scores.items() if k in FIELDS})
        row["seconds"] = round(now - self.last_tick, 3)
        self.last_tick = now
        self.rows.append(row)
        log.info("round %d: validation Dice %.4f (%.1f s)", round_, scores["dice"], row["seconds"])

    def set_uplink(self, uplink: Mapping[int, Mapping[str, int]]) -> None:
        """Fill each site row's ``uplink_bytes`` from per-node (1-based), per-round counts."""
        for row in self.rows:
            if row["site"] == "global":
                continue
            node = list(self.site_names).index(str(row["site"])) + 1
            row["uplink_bytes"] = int(uplink.get(node, {}).get(str(row["round"]), 0))

    def global_rows(self) -> list[dict[str, object]]:
        """The ``global`` rows, in round order."""
        return [r for r in self.rows if r["site"] == "global"]

    def write_csv(self, path: Path) -> Path:
        """Write every row (sites and ``global``) to ``path``."""
        with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            # Round by round, sites before the round's global row (SecAgg+ adds sites last).
            writer.writerows(
                sorted(self.rows, key=lambda r: (int(str(r["round"])), r["site"] == "global"))
            )
        return path

    def plot(self, path: Path, title: str) -> Path:
        """Validation Dice of the global model and each site's training loss, per round."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        glob = self.global_rows()
        left.plot([r["round"] for r in glob], [r["dice"] for r in glob], marker="o", color="k")
        left.set_title("global model: validation Dice")
        plotted = False
        for site in self.site_names:
            rows = [r for r in self.rows if r["site"] == site and _finite(r["train_loss"])]
            if rows:
                right.plot([r["round"] for r in rows], [r["train_loss"] for r in rows], label=site)
                plotted = True
        right.set_title("site training loss")
        if plotted:
            right.legend()
        else:  # SecAgg+: only the masked update leaves a site, no loss is reported
            right.text(0.5, 0.5, "not reported: under SecAgg+ a site sends\nonly its masked update",
                       ha="center", va="center", transform=right.transAxes)  # fmt: skip
        for ax in (left, right):
            ax.set_xlabel("round")
        fig.suptitle(title)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
        return path


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
