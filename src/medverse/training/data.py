"""Training data: cases cached once (RAM or device), seeded random patches, a background loader.

Every patch is a pure function of ``(seed, global sample index)``: the index picks the case
and seeds the crop and augmentation. Results therefore do not depend on the number of data
workers, on prefetching, or on being resumed, and DDP ranks draw disjoint indices.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import Compose, Randomizable
from torch.utils.data import DataLoader, Dataset, Sampler

from medverse.core.volume import Volume
from medverse.preprocessing.msd import MsdCase
from medverse.preprocessing.normalize import normalize_intensity
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import resample_to_spacing
from medverse.preprocessing.transforms import IMAGE, LABEL, prepare_case, training_transforms

Batch = dict[str, torch.Tensor]


def split_chain(chain: Compose) -> tuple[Compose, Compose]:
    """Split a chain before its first random transform: (deterministic head, random tail)."""
    steps = list(chain.transforms)
    first = next((n for n, t in enumerate(steps) if isinstance(t, Randomizable)), len(steps))
    return Compose(steps[:first]), Compose(steps[first:])


def cache_training_cases(
    cases: Sequence[MsdCase], plan: Plan, head: Compose, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Run the deterministic part of the chain once per case and keep the result on ``device``."""
    cached = []
    for case in cases:
        sample = head(prepare_case(case.image, case.label, plan))
        cached.append({key: torch.as_tensor(sample[key]).to(device) for key in (IMAGE, LABEL)})
    return cached


@dataclass(frozen=True)
class ValidationCase:
    """A validation case on the plan's grid.

    Attributes:
        name: Case name.
        image: Normalised image ``[1, i, j, k]`` float32 (on the cache device).
        label: Reference labels ``[i, j, k]`` (CPU).
        spacing: Voxel size in mm.
    """

    name: str
    image: torch.Tensor
    label: torch.Tensor
    spacing: tuple[float, float, float]


def image_on_plan_grid(volume: Volume, plan: Plan) -> Volume:
    """Normalise, then resample to the plan's spacing when it differs (as the Predictor does)."""
    normalised = volume.with_array(normalize_intensity(np.asarray(volume.array), plan))
    target = tuple(float(s) for s in plan.target_spacing)
    if np.allclose(volume.spacing, target, rtol=1e-4):
        return normalised
    return resample_to_spacing(normalised, target, order=1)


def cache_validation_case(case: MsdCase, plan: Plan, device: torch.device) -> ValidationCase:
    """Prepare one validation case: image and labels on the plan's grid."""
    image = image_on_plan_grid(case.image, plan)
    label: Volume = case.label
    if image.shape != label.shape or not np.allclose(image.affine, label.affine, atol=1e-4):
        label = resample_to_spacing(label, plan.target_spacing, order=0)
    tensor = torch.as_tensor(np.ascontiguousarray(image.array), dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(label.array).astype(np.int64))
    return ValidationCase(case.name, tensor[None].to(device), labels, image.spacing)


class PatchDataset(Dataset[Batch]):
    """Random training patches; item ``n`` is always the same patch for the same seed.

    Args:
        cases: Cached cases (``image`` and ``label`` tensors ``[C, i, j, k]``).
        tail: The random part of the training chain (crop and augmentation).
        seed: Run seed.
    """

    def __init__(self, cases: Sequence[Mapping[str, torch.Tensor]], tail: Compose, seed: int):
        self.cases = list(cases)
        self.tail = tail
        self.seed = seed

    def __len__(self) -> int:
        return 2**62  # indices are global sample numbers; the sampler decides which exist

    def __getitem__(self, index: int) -> Batch:
        rng = np.random.default_rng([self.seed, int(index)])
        case = self.cases[int(rng.integers(len(self.cases)))]
        self.tail.set_random_state(seed=int(rng.integers(2**31)))
        out: Any = self.tail(dict(case))
        sample = out[0] if isinstance(out, list) else out
        return {key: torch.as_tensor(sample[key]) for key in (IMAGE, LABEL)}


class EpochSampler(Sampler[int]):
    """Global sample numbers of one epoch for one rank: disjoint across ranks and epochs.

    Args:
        iters: Optimiser steps per epoch.
        batch_size: Samples per step and rank.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(self, iters: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.iters, self.batch_size = iters, batch_size
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose samples the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.iters * self.batch_size

    def __iter__(self) -> Iterator[int]:
        per_step = self.batch_size * self.world_size
        base = self.epoch * self.iters * per_step + self.rank * self.batch_size
        for step in range(self.iters):
            for item in range(self.batch_size):
                yield base + step * per_step + item


class BackgroundLoader:
    """Iterate a DataLoader in a thread, moving batches to the device ahead of the step.

    Args:
        loader: The DataLoader.
        device: Compute device (pinned, non-blocking copies on CUDA).
        depth: Batches kept ready.
    """

    _END = object()

    def __init__(self, loader: DataLoader[Batch], device: torch.device, depth: int = 2):
        self.loader, self.device, self.depth = loader, device, depth

    def _to_device(self, batch: Batch) -> Batch:
        cuda = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=cuda) for k, v in batch.items()}

    @staticmethod
    def _put(out: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
        """Queue ``item`` unless the consumer has gone; False once it has."""
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, out: queue.Queue[Any], stop: threading.Event) -> None:
        try:
            for batch in self.loader:
                if not self._put(out, self._to_device(batch), stop):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put(out, error, stop)
            return
        self._put(out, self._END, stop)

    def __iter__(self) -> Iterator[Batch]:
        out: queue.Queue[Any] = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(out, stop), daemon=True)
        worker.start()
        try:
            while (item := out.get()) is not self._END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join(timeout=10)


def make_patch_loader(
    cases: Sequence[Mapping[str, torch.Tensor]],
    plan: Plan,
    *,
    seed: int,
    sampler: EpochSampler,
    foreground_fraction: float,
    num_workers: int,
    device: torch.device,
) -> BackgroundLoader:
    """Build the training loader: random part of the chain, seeded sampling, prefetching."""
    chain = training_transforms(plan, pos=foreground_fraction, neg=1.0 - foreground_fraction)
    tail = split_chain(chain)[1]
    dataset = PatchDataset(cases, tail, seed)
    loader: DataLoader[Batch] = DataLoader(
        dataset,
        batch_size=sampler.batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda" and num_workers > 0,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    return BackgroundLoader(loader, device)


def training_head(plan: Plan, foreground_fraction: float) -> Compose:
    """The deterministic head of the training chain (run once per case when caching)."""
    chain = training_transforms(plan, pos=foreground_fraction, neg=1.0 - foreground_fraction)
    return split_chain(chain)[0]
