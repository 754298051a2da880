"""MSD hippocampus training cases split over federated sites (IID or "by scanner"), checked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch

from medverse.core.registry import Modality
from medverse.federated.heart_data import SiteDataError
from medverse.federated.scanner import SCANNERS, Scanner, acquire
from medverse.preprocessing.msd import MsdCase, load_msd_dataset
from medverse.preprocessing.plan import Normalization, Plan
from medverse.training.data import (
    ValidationCase,
    cache_training_cases,
    cache_validation_case,
    training_head,
)
from medverse.training.split import make_split

PRESET = "unet_small"
PATCH = (40, 56, 40)  # covers a whole hippocampus crop (~35 x 50 x 35 voxels at 1 mm)
FOREGROUND = 0.5
# By scanner: unequal sites (shares of the training cases), largest first.
SCANNER_SHARES = (0.4, 0.3, 0.2, 0.1)


class SiteSplit(StrEnum):
    """How the training cases are divided over the sites."""

    IID = "iid"
    BY_SCANNER = "by-scanner"


def agreed_plan(labels: dict[int, str]) -> Plan:
    """The plan every site uses, fixed up front: 1 mm, per-image z-score, one crop-sized patch.

    Nothing in it is fitted on any site's images, so no statistic crosses a site boundary.
    """
    return Plan(
        modality=Modality.MR,
        target_spacing=(1.0, 1.0, 1.0),
        patch_size=PATCH,
        normalization=Normalization.ZSCORE,
        labels=labels,
        preset=PRESET,
    )


@dataclass
class HippoSite:
    """One site's training cases (after its scanner's change) and their cached tensors."""

    name: str
    cases: list[MsdCase]
    scanner: Scanner | None = None
    cached: list[dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def num_examples(self) -> int:
        """Training cases at this site."""
        return len(self.cases)


@dataclass
class HippoFederation:
    """The sites, the untouched validation cases, and the agreed plan."""

    sites: list[HippoSite]
    validation: list[ValidationCase]
    plan: Plan


def site_case_counts(n_cases: int, n_sites: int, split: SiteSplit) -> list[int]:
    """Cases per site: equal (IID) or the unequal ``SCANNER_SHARES`` (by scanner)."""
    if split == SiteSplit.IID:
        return [len(part) for part in np.array_split(np.arange(n_cases), n_sites)]
    shares = np.asarray(SCANNER_SHARES[:n_sites])
    counts = np.floor(shares / shares.sum() * n_cases).astype(int)
    counts[0] += n_cases - counts.sum()
    return [int(c) for c in counts]


def check_site(site: HippoSite, labels: dict[int, str]) -> None:
    """Refuse a site whose cases have extra channels or label values the task does not know.

    Raises:
        SiteDataError: Naming the site and the case.
    """
    allowed = {0, *labels}
    for case in site.cases:
        if np.asarray(case.image.array).ndim != 3:
            raise SiteDataError(
                f"site {site.name}: case {case.name} has image shape "
                f"{np.asarray(case.image.array).shape}, expected one 3D channel"
            )
        found = set(np.unique(np.asarray(case.label.array)).astype(int).tolist())
        if not found <= allowed:
            raise SiteDataError(
                f"site {site.name}: case {case.name} has label values {sorted(found - allowed)}; "
                f"the task's labels are {sorted(allowed)}"
            )


def _with_scanner(case: MsdCase, scanner: Scanner, seed: int) -> MsdCase:
    image = case.image.with_array(acquire(np.asarray(case.image.array), scanner, seed))
    return MsdCase(case.name, image, case.label)


def make_sites(
    cases: Sequence[MsdCase], n_sites: int, split: SiteSplit, seed: int
) -> list[HippoSite]:
    """Shuffle ``cases`` (seeded) and deal them to ``n_sites`` sites.

    By scanner, site ``i`` gets ``SCANNERS[i]``'s acquisition change on every image.
    """
    if not 2 <= n_sites <= len(SCANNERS):
        raise SiteDataError(f"the hippocampus task has 2-{len(SCANNERS)} sites, got {n_sites}")
    order = np.random.default_rng([seed, 14]).permutation(len(cases))
    counts = site_case_counts(len(cases), n_sites, split)
    bounds = np.cumsum([0, *counts])
    sites = []
    for i in range(n_sites):
        mine = [cases[int(j)] for j in order[bounds[i] : bounds[i + 1]]]
        scanner = SCANNERS[i] if split == SiteSplit.BY_SCANNER else None
        if scanner is not None:
            mine = [_with_scanner(c, scanner, seed * 100_003 + k) for k, c in enumerate(mine)]
        sites.append(HippoSite(f"site{i}", mine, scanner))
    return sites


def load_federation(
    root: Path,
    n_sites: int = 4,
    split: SiteSplit = SiteSplit.IID,
    seed: int = 0,
    max_train: int | None = None,
    max_validation: int | None = None,
) -> HippoFederation:
    """Load the MSD hippocampus data, hold out fold 0, and deal the rest to the sites.

    Every site is checked before any training (a bad site raises ``SiteDataError``).

    Args:
        root: The MSD Task04 folder.
        n_sites: Number of sites (2-4).
        split: IID, or by scanner (a fixed acquisition change per site, unequal counts).
        seed: Seed of the fold split and the dealing.
        max_train: Use only this many training cases (small tests).
        max_validation: Use only this many validation cases (small tests).
    """
    dataset = load_msd_dataset(root)
    by_name = {c.name: c for c in dataset.cases}
    fold = make_split(list(by_name), seed=seed, fold=0, n_folds=5)
    train = [by_name[n] for n in fold.train[:max_train]]
    plan = agreed_plan(dataset.labels)
    sites = make_sites(train, n_sites, split, seed)
    for site in sites:
        check_site(site, dataset.labels)
    head = training_head(plan, FOREGROUND)
    cpu = torch.device("cpu")
    for site in sites:
        site.cached = cache_training_cases(site.cases, plan, head, cpu)
    names = fold.validation[:max_validation]
    validation = [cache_validation_case(by_name[n], plan, cpu) for n in names]
    return HippoFederation(sites, validation, plan)
