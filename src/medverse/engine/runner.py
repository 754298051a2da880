"""Run the windows of one or many images through a network backend in shared batches.

Each image is a `WindowJob` (its `WindowBlender` and the sink that takes its finished slabs).
Batches are filled from the jobs in submission order, so the last windows of one study share
a batch with the first windows of the next; studies of different shapes mix freely because
every window has the model's patch size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from medverse.core.errors import ModelError
from medverse.engine.windows import Slab, WindowBlender

MIRROR_AXES: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4))
"""The 8 mirrorings of test-time augmentation (spatial axes of a ``(B, C, X, Y, Z)`` batch)."""


class Backend(Protocol):
    """A network behind one call: ``(B, 1, *roi)`` float32 -> ``(B, C, *roi)`` logits."""

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of windows, on the batch's device."""
        ...


@dataclass
class WindowJob:
    """One image going through the windows.

    Attributes:
        blender: Its windows and running sums.
        sink: Called with each finished slab, in z order.
        tag: Anything the caller wants back with the finished job.
    """

    blender: WindowBlender
    sink: Callable[[Slab], None]
    tag: Any = None

    def next_patch(self) -> torch.Tensor | None:
        """The next window to run, or None when none is ready (all handed out, or waiting)."""
        return self.blender.next_patch()

    def deliver(self) -> None:
        """Pass the finished slabs to the sink."""
        for slab in self.blender.take_slabs():
            self.sink(slab)


class WindowRunner:
    """Batches windows from the submitted jobs and feeds the results back.

    With ``pipelined``, the network runs in a background thread: while one batch is in the
    network, the caller's thread blends the batch before it and maps finished slabs to the
    native grid, so the CPU work around the network no longer waits for it (and the other
    way round). Results are blended in the same order either way, so the labels are the same.

    Args:
        backend: The network.
        batch_size: Windows per backend call.
        channels: Logit channels to keep, in order (None keeps all).
        expected_channels: Channels the network must produce (None: not checked).
        mirror: Average the logits over the 8 axis mirrorings of each window (8x the compute).
        pipelined: Keep one batch in the network while the previous one is blended.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        batch_size: int,
        channels: Sequence[int] | None = None,
        expected_channels: int | None = None,
        mirror: bool = False,
        pipelined: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.batch_size = batch_size
        self.channels = list(channels) if channels is not None else None
        self.expected_channels = expected_channels
        self.mirror = mirror
        self.pipelined = pipelined
        self.jobs: list[WindowJob] = []
        self.windows_run = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[list[WindowJob], Future[torch.Tensor]] | None = None

    def submit(self, job: WindowJob) -> None:
        """Queue an image; its windows join the next batches."""
        self.jobs.append(job)

    @property
    def busy(self) -> bool:
        """True while a submitted job has not finished."""
        return bool(self.jobs)

    def step(self) -> list[WindowJob]:
        """Run one batch (if any window is left) and return the jobs that finished.

        Pipelined, the batch is started and the one before it (if any) is blended.
        """
        owners, batch = self._gather()
        if not self.pipelined:
            if batch:
                self._blend(owners, self.predict(torch.stack(batch)))
        else:
            launched = None
            if batch:
                launched = (owners, self._network().submit(self.predict, torch.stack(batch)))
            if self._pending is not None:
                done, future = self._pending
                self._blend(done, future.result())
            self._pending = launched
        finished = []
        for job in list(self.jobs):
            job.deliver()
            if job.blender.done:
                self.jobs.remove(job)
                finished.append(job)
        if not self.jobs:
            self.close()
        return finished

    def close(self) -> None:
        """Stop the network thread (a later step starts a new one)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _gather(self) -> tuple[list[WindowJob], list[torch.Tensor]]:
        """The next batch of windows and the job of each."""
        batch: list[torch.Tensor] = []
        owners: list[WindowJob] = []
        for job in self.jobs:
            while len(batch) < self.batch_size and (patch := job.next_patch()) is not None:
                batch.append(patch)
                owners.append(job)
            if len(batch) == self.batch_size:
                break
        return owners, batch

    def _blend(self, owners: list[WindowJob], logits: torch.Tensor) -> None:
        for job, window_logits in zip(owners, logits):
            job.blender.add(window_logits)
        self.windows_run += len(owners)

    def _network(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="medverse-network")
        return self._pool

    def run(self) -> list[WindowJob]:
        """Run until every submitted job has finished; returns them in finishing order."""
        finished: list[WindowJob] = []
        while self.jobs:
            finished += self.step()
        return finished

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """Kept-channel logits of a ``(B, 1, *roi)`` batch (mirror-averaged if asked)."""
        if not self.mirror:
            return self._kept(self.backend(batch))
        total: torch.Tensor | None = None
        for axes in MIRROR_AXES:
            flipped = batch.flip(axes) if axes else batch
            logits = self._kept(self.backend(flipped)).float()
            logits = logits.flip(axes) if axes else logits
            total = logits if total is None else total + logits
        assert total is not None
        return total / len(MIRROR_AXES)

    def _kept(self, logits: torch.Tensor) -> torch.Tensor:
        found = int(logits.shape[1])
        if self.expected_channels is not None and found != self.expected_channels:
            raise ModelError(
                f"network predicts {found} classes but the plan needs {self.expected_channels} "
                f"(background and label values up to {self.expected_channels - 1})"
            )
        if self.channels is None or self.channels == list(range(found)):
            return logits
        return logits[:, self.channels]
