"""Deterministic train/validation split (k-fold by seed), saved to and read from split.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medverse.core.errors import ConfigError, InputError
from medverse.io.atomic import write_text_atomic

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class Split:
    """Which cases train and which validate.

    Attributes:
        train: Case ids used for training.
        validation: Case ids held out for validation.
        seed: Seed of the shuffle.
        fold: Which fold is held out.
        n_folds: Number of folds.
    """

    train: tuple[str, ...]
    validation: tuple[str, ...]
    seed: int
    fold: int
    n_folds: int

    def to_json(self) -> str:
        """Return the split as pretty JSON."""
        doc = {
            "seed": self.seed,
            "fold": self.fold,
            "n_folds": self.n_folds,
            "train": list(self.train),
            "validation": list(self.validation),
        }
        return json.dumps(doc, indent=2) + "\n"


def make_split(case_ids: Sequence[str], *, seed: int, fold: int, n_folds: int = 5) -> Split:
    """Split ``case_ids`` into ``n_folds`` folds after a seeded shuffle; hold out ``fold``.

    The result depends only on the set of ids, the seed and the fold, not on input order.

    Args:
        case_ids: Unique case ids.
        seed: Shuffle seed.
        fold: Fold to hold out, ``0 <= fold < n_folds``.
        n_folds: Number of folds (at least 2, at most the number of cases).

    Raises:
        ConfigError: If the fold or the number of folds does not fit the cases.
    """
    ids = sorted(set(case_ids))
    if len(ids) != len(case_ids):
        raise ConfigError("case ids must be unique to split them")
    if not 2 <= n_folds <= len(ids):
        raise ConfigError(f"need 2 <= folds <= {len(ids)} cases, got {n_folds} folds")
    if not 0 <= fold < n_folds:
        raise ConfigError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    order = np.random.default_rng(seed).permutation(len(ids))
    held = set(int(i) for i in np.array_split(order, n_folds)[fold])
    train = tuple(ids[i] for i in range(len(ids)) if i not in held)
    validation = tuple(ids[i] for i in range(len(ids)) if i in held)
    return Split(train, validation, seed, fold, n_folds)


def save_split(split: Split, run_dir: Path) -> Path:
    """Write ``split.json`` into ``run_dir`` atomically and return its path."""
    return write_text_atomic(Path(run_dir) / SPLIT_FILE, split.to_json())


def load_split(path: Path) -> Split:
    """Read a split written by ``save_split``.

    Raises:
        InputError: If the file is missing or not a split.
    """
    try:
        doc = json.loads(Path(path).read_text())
        return Split(
            tuple(doc["train"]),
            tuple(doc["validation"]),
            int(doc["seed"]),
            int(doc["fold"]),
            int(doc["n_folds"]),
        )
    except FileNotFoundError:
        raise InputError("split file not found", path) from None
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"not a medverse split file ({error})", path) from None
