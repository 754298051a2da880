"""The Predictor: a Volume in, a label map on the same native grid out, on any backend.

Steps (all on the compute device): the plan's normalisation fused with linear resampling to
the plan's spacing; Gaussian-weighted sliding windows over ``plan.patch_size`` patches, in
batches that may mix studies; softmax; labels on the native grid from probabilities
interpolated back (only where the model-grid labels around a voxel disagree); argmax. The
network runs in torch (eager or compiled) or ONNX Runtime (CPU, CUDA or TensorRT provider).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medverse.core.errors import ConfigError
from medverse.core.volume import LabelMap, Volume
from medverse.engine.backends import BackendKind, NetPrecision, make_backend
from medverse.engine.cpu_isa import cpu_isa
from medverse.engine.cpu_memory import keep_freed_memory
from medverse.engine.runner import MIRROR_AXES
from medverse.engine.sinks import channel_values
from medverse.engine.sliding import (
    LabelJob,
    WindowOptions,
    cpu_glue,
    make_runner,
    predict_labels,
    predict_probabilities,
)
from medverse.models.checkpoint import LoadedModel

__all__ = ["Predictor", "default_batch_size", "mirror_axes", "resolve_device"]

CUDA_BATCH = 8


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto"``, ``"cpu"`` or ``"cuda[:n]"`` into a torch device.

    Raises:
        ConfigError: If CUDA is asked for but absent, or the name is unknown.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA device is available")
        return torch.device(device)
    raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")


def mirror_axes(enabled: bool) -> list[tuple[int, ...]]:
    """The flips test-time augmentation averages over: all 8 subsets of the 3 axes, or none."""
    return list(MIRROR_AXES) if enabled else [()]


def default_batch_size(device: torch.device) -> int:
    """Windows per network call: 8 on a GPU; on a CPU one per thread (each runs on a core)."""
    return CUDA_BATCH if device.type == "cuda" else max(2, torch.get_num_threads())


class Predictor:
    """Segment Volumes with a loaded model, the way the model's plan preprocessed its training.

    Args:
        model: A checkpoint or a MONAI bundle (`medverse.inference.loading.load_model`).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        overlap: Fraction of overlap between neighbouring windows (0.5 = about 2x the windows
            per axis of 0, i.e. up to 8x the compute in 3D).
        sw_batch_size: Windows per network call (default: 8 on CUDA, one per CPU thread).
        mirror_tta: Average over the 8 axis mirrorings of each window (8x the compute).
        backend: ``torch``, ``compile`` (torch.compile: minutes of compiling first),
            ``onnxruntime``, ``openvino`` (CPU; the export is cached in ~/.cache/medverse/onnx)
            or ``auto`` (the fastest measured path for the device and CPU ISA, see
            `medverse.engine.backends.resolve_kind`).
        precision: ``auto`` (bf16/fp16 autocast on CUDA, float32 on the CPU), ``fp32``,
            ``bf16`` (about 2x faster on CPUs with AVX512-BF16/AMX) or ``fp16`` (CUDA).
        skip_background: Skip windows that hold only air (CT: at or below -900 HU after the
            plan's clip) or background (MR: at or below 5% of the 99th percentile); their
            voxels become background unless another window covers them.
        coarse_first: Per z-band, run a covering subset of the windows first and the others
            only where that first pass is not clearly background (saves windows at overlap
            0.5 away from structures; none at 0.25).
        onnx_path: For ``onnxruntime``: a file from ``medverse export`` (else exported in memory).
        provider: ONNX Runtime provider: ``cpu``, ``cuda`` or ``tensorrt``.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        device: str = "auto",
        overlap: float = 0.5,
        sw_batch_size: int | None = None,
        mirror_tta: bool = False,
        backend: str = BackendKind.TORCH,
        precision: str = NetPrecision.AUTO,
        skip_background: bool = False,
        coarse_first: bool = False,
        onnx_path: str | Path | None = None,
        provider: str | None = None,
    ) -> None:
        if not 0.0 <= overlap < 1.0:
            raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
        if sw_batch_size is not None and sw_batch_size < 1:
            raise ConfigError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            keep_freed_memory()  # opt-in (MEDVERSE_KEEP_FREED_MEMORY=1): faster, more memory
        self.model = model
        self.plan = model.plan
        self.labels = {int(v): str(n) for v, n in self.plan.labels.items() if int(v) != 0}
        self.channel_values = channel_values(self.labels)
        self.backend = make_backend(
            model, self.device, kind=backend, precision=precision, onnx=onnx_path, provider=provider
        )
        self.options = WindowOptions(
            overlap=overlap,
            batch_size=sw_batch_size or default_batch_size(self.device),
            mirror=mirror_tta,
            skip_background=skip_background,
            half_accumulators=self.device.type == "cuda",
            coarse_first=coarse_first,
            pipelined=self.device.type == "cpu",
        )

    @property
    def overlap(self) -> float:
        """Sliding-window overlap."""
        return self.options.overlap

    @property
    def mirror_tta(self) -> bool:
        """Whether mirroring test-time augmentation is on."""
        return self.options.mirror

    def describe(self) -> dict[str, str]:
        """The settings, as strings (for reports and benchmark records)."""
        precision = self.backend.dtype
        isa = {"cpu_isa": str(cpu_isa())} if self.device.type == "cpu" else {}
        return {
            "device": str(self.device),
            **isa,
            "backend": str(self.backend.name),
            "precision": str(precision).removeprefix("torch.") if precision else "fp32",
            "overlap": str(self.overlap),
            "mirror_tta": str(self.mirror_tta).lower(),
            "skip_background": str(self.options.skip_background).lower(),
            "coarse_first": str(self.options.coarse_first).lower(),
            "batch_size": str(self.options.batch_size),
            **({"network": self.backend.describe()} if hasattr(self.backend, "describe") else {}),
        }

    def predict(self, volume: Volume) -> LabelMap:
        """Segment ``volume``; the label map has the same shape and affine as the input.

        A bundle's network sees the volume in its orientation; the labels come back onto
        the input grid.
        """
        oriented = self.model.oriented(volume)
        labels = predict_labels(oriented, self.plan, self.backend, self.options, self.device)
        return self.model.restored(labels, volume)

    def predict_probabilities(self, volume: Volume) -> np.ndarray:
        """Class probabilities ``(C, *grid)`` float32 on ``model.oriented(volume)``'s grid.

        That is the input grid for a medverse checkpoint (a bundle's may permute the axes).
        Channel 0 is background; channel ``c`` is label value ``channel_values[c]`` (the
        network channels of the plan's labels, ascending).
        """
        oriented = self.model.oriented(volume)
        return predict_probabilities(oriented, self.plan, self.backend, self.options, self.device)

    def predict_many(
        self, volumes: Iterable[tuple[Any, Volume]], *, in_flight: int = 2
    ) -> Iterator[tuple[Any, LabelMap]]:
        """Segment several Volumes, batching windows across them; yields ``(tag, labels)``.

        Up to ``in_flight`` studies are prepared and in the windows at once, so the last
        windows of one share a batch with the first of the next (shapes may differ). Results
        come in the order the studies finish, which is the order they came in.

        Args:
            volumes: ``(tag, volume)`` pairs, e.g. from a background reader.
            in_flight: Studies held at once (memory grows with it).
        """
        runner = make_runner(self.backend, self.plan, self.options)
        source = iter(volumes)
        jobs: dict[int, tuple[LabelJob, Volume]] = {}
        more = True
        while more or runner.busy:
            with cpu_glue(self.device):  # not held across a yield: the caller runs between
                while more and len(runner.jobs) < max(1, in_flight):
                    item = next(source, None)
                    more = item is not None
                    if item is not None:
                        oriented = self.model.oriented(item[1])
                        job = LabelJob(oriented, self.plan, self.options, self.device, item[0])
                        jobs[id(job.job)] = (job, item[1])
                        runner.submit(job.job)
                finished = [(job.tag, self._labels(*jobs.pop(id(job)))) for job in runner.step()]
            yield from finished

    def _labels(self, job: LabelJob, volume: Volume) -> LabelMap:
        """The labels of a finished job, on ``volume``'s grid."""
        return self.model.restored(job.result(), volume)
