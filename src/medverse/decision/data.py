"""Load the decision tasks' tables from the shared data, with missing values made explicit."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medverse.core.errors import InputError
from medverse.decision.schema import HEART_DISEASE, HEART_FAILURE, TaskSchema

HEART_DISEASE_DIR = "uci_heart_disease"
HEART_FAILURE_FILE = "uci_heart_failure_clinical_records/heart_failure_clinical_records_dataset.csv"
_MISSING_TOKENS = {"?", "nan", "NaN", ""}


@dataclass(frozen=True)
class Table:
    """Patients of one task: features (NaN = missing), binary labels and the site of each row.

    Attributes:
        schema: The task.
        features: ``[patients, features]`` float64, NaN where not recorded.
        labels: ``[patients]`` 0/1.
        sites: ``[patients]`` site name per row.
    """

    schema: TaskSchema
    features: np.ndarray
    labels: np.ndarray
    sites: np.ndarray

    def select(self, sites: list[str] | tuple[str, ...]) -> Table:
        """Return the rows of the given sites."""
        unknown = set(sites) - set(self.sites.tolist())
        if unknown:
            raise InputError(f"no patients from site(s) {sorted(unknown)}")
        keep = np.isin(self.sites, list(sites))
        return Table(self.schema, self.features[keep], self.labels[keep], self.sites[keep])

    def missing_fraction(self) -> dict[str, float]:
        """Fraction of patients with each feature missing."""
        missing = np.isnan(self.features).mean(axis=0)
        return {name: round(float(m), 4) for name, m in zip(self.schema.names, missing)}


def _parse(cell: str, schema: TaskSchema, column: int, path: Path, line: int) -> float:
    feature = schema.features[column]
    text = cell.strip()
    if text in _MISSING_TOKENS:
        return math.nan
    try:
        return feature.check(float(text))
    except (ValueError, InputError) as error:
        raise InputError(
            f"line {line}, {feature.name}: cannot use {text!r} ({error})", path
        ) from None


def read_heart_disease_site(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``processed.<site>.data`` file: 13 features then ``num`` (0-4), no header.

    ``?`` and ``NaN`` are missing; so is a 0 where the schema says 0 means "not measured".

    Raises:
        InputError: Naming the file and line of a short row or an invalid value.
    """
    rows, labels = [], []
    width = len(HEART_DISEASE.features)
    with path.open(newline="") as handle:
        for line, cells in enumerate(csv.reader(handle), start=1):
            if not cells:
                continue
            if len(cells) != width + 1:
                raise InputError(f"line {line}: {len(cells)} columns, expected {width + 1}", path)
            rows.append([_parse(c, HEART_DISEASE, i, path, line) for i, c in enumerate(cells[:-1])])
            labels.append(int(float(cells[-1]) > 0))
    if not rows:
        raise InputError("no patients in file", path)
    return np.asarray(rows, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def load_heart_disease(data_root: Path) -> Table:
    """Load the four UCI heart-disease hospitals (``<data_root>/uci_heart_disease``).

    Raises:
        InputError: If a site file is missing or unreadable.
    """
    folder = Path(data_root) / HEART_DISEASE_DIR
    feats, labels, sites = [], [], []
    for site in HEART_DISEASE.sites:
        path = folder / f"processed.{site}.data"
        if not path.is_file():
            raise InputError("heart-disease site file not found", path)
        x, y = read_heart_disease_site(path)
        feats.append(x)
        labels.append(y)
        sites.extend([site] * len(y))
    return Table(HEART_DISEASE, np.concatenate(feats), np.concatenate(labels), np.asarray(sites))


def load_heart_failure(data_root: Path) -> Table:
    """Load the heart-failure records; ``time`` (follow-up days) is dropped: it leaks the label.

    Raises:
        InputError: If the file is missing, lacks a column, or holds an invalid value.
    """
    path = Path(data_root) / HEART_FAILURE_FILE
    if not path.is_file():
        raise InputError("heart-failure records not found", path)
    rows, labels = [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        needed = [*HEART_FAILURE.names, "DEATH_EVENT"]
        absent = [n for n in needed if n not in (reader.fieldnames or [])]
        if absent:
            raise InputError(f"missing column(s) {absent}", path)
        for line, record in enumerate(reader, start=2):
            rows.append(
                [_parse(record[n], HEART_FAILURE, i, path, line) for i, n in enumerate(needed[:-1])]
            )
            labels.append(int(float(record["DEATH_EVENT"])))
    sites = np.asarray([HEART_FAILURE.sites[0]] * len(rows))
    return Table(HEART_FAILURE, np.asarray(rows), np.asarray(labels, dtype=np.int64), sites)


def load_task(name: str, data_root: Path) -> Table:
    """Load the table of task ``name`` from the shared data folder."""
    if name == HEART_DISEASE.name:
        return load_heart_disease(data_root)
    if name == HEART_FAILURE.name:
        return load_heart_failure(data_root)
    raise InputError(f"no loader for task {name!r}")
