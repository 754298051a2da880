from __future__ import annotations

from pathlib import Path

import pytest

from medverse.core.errors import ConfigError, InputError
from medverse.training.split import load_split, make_split, save_split

IDS = [f"case_{n:03d}" for n in range(23)]


def test_folds_partition_the_cases_and_repeat_for_the_same_seed() -> None:
    folds = [make_split(IDS, seed=7, fold=k, n_folds=5) for k in range(5)]
    held = [set(s.validation) for s in folds]
    assert set().union(*held) == set(IDS)
    assert sum(len(h) for h in held) == len(IDS)  # disjoint
    for split in folds:
        assert set(split.train) | set(split.validation) == set(IDS)
        assert not set(split.train) & set(split.validation)
    again = make_split(list(reversed(IDS)), seed=7, fold=2, n_folds=5)
    assert again == folds[2]  # input order does not matter
    assert make_split(IDS, seed=8, fold=2, n_folds=5).validation != folds[2].validation


def test_split_round_trips_through_json(tmp_path: Path) -> None:
    split = make_split(IDS, seed=0, fold=1, n_folds=4)
    path = save_split(split, tmp_path)
    assert path.name == "split.json"
    assert load_split(path) == split


def test_bad_fold_and_bad_file_are_reported() -> None:
    with pytest.raises(ConfigError, match=r"fold must be in 0\.\.4"):
        make_split(IDS, seed=0, fold=5, n_folds=5)
    with pytest.raises(ConfigError, match="folds"):
        make_split(IDS[:3], seed=0, fold=0, n_folds=5)
    with pytest.raises(InputError, match="not found"):
        load_split(Path("/nonexistent/split.json"))
