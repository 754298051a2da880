"""The per-epoch metrics CSV: appended each epoch, rewritten from the saved state on resume."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from medverse.io.atomic import write_text_atomic

Row = Mapping[str, float | int | str | None]


def metric_columns(label_names: Sequence[str]) -> list[str]:
    """Return the CSV columns for a run whose labels are called ``label_names``."""
    per_label = [f"val_dice_{name}" for name in label_names]
    return [
        "epoch",
        "train_loss",
        "lr",
        "val_dice",
        *per_label,
        "epoch_seconds",
        "elapsed_seconds",
    ]


def _cell(value: float | int | str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.9g}"
    return str(value)


class MetricsLog:
    """A CSV file with one row per epoch and a fixed header.

    Args:
        path: The CSV file.
        columns: Column names, in order; rows may omit some (left empty).
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)

    def _format(self, rows: Sequence[Row], header: bool) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if header:
            writer.writerow(self.columns)
        for row in rows:
            writer.writerow([_cell(row.get(col)) for col in self.columns])
        return buffer.getvalue()

    def rewrite(self, rows: Sequence[Row]) -> None:
        """Replace the file (atomically) with the header and ``rows``."""
        write_text_atomic(self.path, self._format(rows, header=True))

    def append(self, row: Row) -> None:
        """Add one row (writing the header first if the file does not exist)."""
        if not self.path.exists():
            self.rewrite([row])
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(self._format([row], header=False))
            handle.flush()


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Read a metrics CSV back as a list of ``{column: text}`` rows."""
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
