from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from medverse.preprocessing.fingerprint import compute_fingerprint
from medverse.preprocessing.msd import load_msd_dataset
from medverse.preprocessing.plan import Plan, make_plan
from medverse.preprocessing.transforms import training_transforms
from medverse.training.data import (
    EpochSampler,
    PatchDataset,
    cache_training_cases,
    split_chain,
    training_head,
)

Cached = tuple[Plan, list[dict[str, torch.Tensor]]]


@pytest.fixture(scope="module")
def cached(tiny_dataset: Path) -> Cached:
    data = load_msd_dataset(tiny_dataset)
    pairs = ((c.image, c.label) for c in data.cases)
    fingerprint = compute_fingerprint(pairs, data.modality, labels=data.labels)
    plan = make_plan(fingerprint, preset="unet_small", overrides={"patch_size": [16, 16, 16]})
    cases = cache_training_cases(data.cases, plan, training_head(plan, 1.0), torch.device("cpu"))
    return plan, cases


def test_ranks_and_epochs_draw_disjoint_sample_numbers() -> None:
    drawn = []
    for epoch in range(3):
        for rank in range(2):
            sampler = EpochSampler(iters=4, batch_size=3, rank=rank, world_size=2)
            sampler.set_epoch(epoch)
            drawn.append(list(sampler))
    flat = [n for numbers in drawn for n in numbers]
    assert len(flat) == len(set(flat)) == 3 * 2 * 4 * 3
    assert sorted(flat) == list(range(len(flat)))


def test_the_chain_splits_before_the_first_random_transform(cached: Cached) -> None:
    plan, _ = cached
    head, tail = split_chain(training_transforms(plan))
    assert "RandCropByPosNegLabeld" in type(tail.transforms[0]).__name__
    assert not any("Rand" in type(t).__name__ for t in head.transforms)


def test_a_patch_depends_only_on_its_number(cached: Cached) -> None:
    plan, cases = cached
    tail = split_chain(training_transforms(plan, pos=1.0, neg=0.0))[1]
    first, again = PatchDataset(cases, tail, seed=3), PatchDataset(cases, tail, seed=3)
    a, b = first[17], first[18]
    assert torch.equal(a["image"], again[17]["image"]) and torch.equal(
        a["label"], again[17]["label"]
    )
    assert not torch.equal(a["image"], b["image"])
    assert tuple(a["image"].shape) == (1, 16, 16, 16)
    # foreground-only sampling: every patch holds labelled voxels
    assert all(first[n]["label"].max() > 0 for n in range(12))


def test_worker_processes_do_not_change_the_batches(cached: Cached) -> None:
    plan, cases = cached
    tail = split_chain(training_transforms(plan))[1]

    def batches(workers: int) -> list[torch.Tensor]:
        sampler = EpochSampler(iters=2, batch_size=2)
        loader = DataLoader(PatchDataset(cases, tail, 0), batch_size=2, sampler=sampler,
                            num_workers=workers)  # fmt: skip
        return [b["image"] for b in loader]

    for x, y in zip(batches(0), batches(2), strict=True):
        assert torch.equal(x, y)
