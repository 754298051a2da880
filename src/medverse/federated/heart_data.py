"""The UCI heart-disease hospitals as federated sites: load, check, encode, split each locally."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from medverse.core.errors import InputError

COLUMNS = (
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak",
    "slope", "ca", "thal", "num",
)  # fmt: skip
FEATURES = tuple(COLUMNS[:-1])
# Public clinical reference (centre, scale) per feature: fixed constants, not fitted on any site,
# so no statistic crosses a site boundary.
_SCALE = {
    "age": (55.0, 10.0), "sex": (0.5, 0.5), "cp": (2.5, 1.0), "trestbps": (130.0, 20.0),
    "chol": (240.0, 60.0), "fbs": (0.5, 0.5), "restecg": (1.0, 1.0), "thalach": (140.0, 25.0),
    "exang": (0.5, 0.5), "oldpeak": (1.0, 1.2), "slope": (2.0, 0.7), "ca": (1.0, 1.0),
    "thal": (5.0, 2.0),
}  # fmt: skip
N_INPUTS = 2 * len(FEATURES)  # scaled value + missing indicator per feature


class HeartSiteName(StrEnum):
    """The four hospitals of the UCI heart-disease data."""

    CLEVELAND = "cleveland"
    HUNGARIAN = "hungarian"
    SWITZERLAND = "switzerland"
    VA = "va"


class SiteDataError(InputError):
    """A site's data cannot be used (wrong columns or labels); raised before round 1."""


@dataclass(frozen=True)
class HeartSite:
    """One hospital's local data, split into a training and a held-out part."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def read_site_table(path: Path, site: str) -> pd.DataFrame:
    """Read one site's table and check its columns and labels.

    Raises:
        SiteDataError: Naming the site and the file, when the columns or labels are wrong.
    """
    if not path.is_file():
        raise SiteDataError(f"site {site}: data file not found", path)
    table = pd.read_csv(path, header=None, na_values=["?", "NaN"])
    if table.shape[1] != len(COLUMNS):
        raise SiteDataError(
            f"site {site}: {table.shape[1]} columns, expected {len(COLUMNS)}: {' '.join(COLUMNS)}",
            path,
        )
    table.columns = list(COLUMNS)
    numeric = table.apply(pd.to_numeric, errors="coerce")
    labels = numeric["num"]
    bad = ~labels.isin([0, 1, 2, 3, 4])
    if bad.any():
        raise SiteDataError(
            f"site {site}: {int(bad.sum())} rows have a diagnosis 'num' outside 0-4 "
            f"(first: {table['num'][bad].iloc[0]!r})",
            path,
        )
    if site == HeartSiteName.SWITZERLAND:
        numeric.loc[numeric["chol"] == 0, "chol"] = np.nan  # 0 encodes missing there
    return numeric


def encode(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Features (scaled, missing -> 0 plus a missing indicator) and the binary target num > 0."""
    values = table[list(FEATURES)].to_numpy(dtype=np.float64)
    centre = np.array([_SCALE[f][0] for f in FEATURES])
    scale = np.array([_SCALE[f][1] for f in FEATURES])
    missing = np.isnan(values)
    scaled = np.where(missing, 0.0, (values - centre) / scale)
    x = np.concatenate([scaled, missing.astype(np.float64)], axis=1).astype(np.float32)
    y = (table["num"].to_numpy() > 0).astype(np.float32)
    return x, y


def load_site(root: Path, site: str, test_fraction: float = 0.3, seed: int = 0) -> HeartSite:
    """Load one hospital and split it (stratified, seeded) into training and held-out parts."""
    x, y = encode(read_site_table(root / f"processed.{site}.data", site))
    rng = np.random.default_rng([seed, list(HeartSiteName).index(HeartSiteName(site))])
    test = np.zeros(len(y), dtype=bool)
    for label in (0.0, 1.0):
        idx = np.flatnonzero(y == label)
        n_test = round(len(idx) * test_fraction)
        test[rng.choice(idx, size=n_test, replace=False)] = True
    return HeartSite(site, x[~test], y[~test], x[test], y[test])


def load_sites(root: Path, n_sites: int = 4, seed: int = 0) -> list[HeartSite]:
    """Load the first ``n_sites`` hospitals, checking every one before any training starts."""
    names = list(HeartSiteName)
    if not 1 <= n_sites <= len(names):
        raise SiteDataError(f"the heart task has 1-{len(names)} sites, asked for {n_sites}")
    return [load_site(root, str(name), seed=seed) for name in names[:n_sites]]
