"""Whole-volume segmentation, in one process or split across N (``--spatial-parallel N``).

The window is the whole image on the model grid (padded up to the network's stride), so the
network sees all of it at once. With N >= 2 the one window runs on N local processes, each
holding a slab along the image's longest axis plus the halos its layers read from its
neighbours (`medverse.parallel.spatial`): gloo on the CPU, NCCL with one GPU per rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from medverse.core.errors import ConfigError, InputError
from medverse.core.volume import LabelMap, Volume
from medverse.engine.backends import NetPrecision, TorchBackend, autocast_dtype
from medverse.engine.runner import Backend
from medverse.engine.sliding import WindowOptions, predict_labels
from medverse.models.checkpoint import LoadedModel
from medverse.models.factory import network_stride
from medverse.parallel.spatial import SlabTooThinError
from medverse.parallel.spatial.check import AXIS_NAMES, check_split
from medverse.parallel.spatial.runner import SpatialRunner
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import grid_for_spacing

DEFAULT_TIMEOUT_S = 3600.0
"""Deadline of one spatially parallel prediction (a rank that dies is reported sooner)."""

_GRID_AXES = ("X", "Y", "Z")


class WholeVolumePredictor:
    """Segment a Volume with one window covering all of it, on ``ranks`` processes.

    Built per image (the window is that image's model grid), after checking that the grid
    splits over the ranks, so a bad input fails before any process starts.

    Args:
        model: A medverse checkpoint (its preset gives the network's stride).
        volume: The image to be segmented.
        source: Where ``volume`` came from, named in errors.
        ranks: 1 runs in this process; N >= 2 splits the volume over N processes.
        device: ``auto``, ``cpu`` or ``cuda`` (CUDA with N >= 2 needs N GPUs: NCCL).
        mirror_tta: Average over the 8 axis mirrorings (8x the compute).
        precision: ``auto``/``fp32``; ``bf16``/``fp16`` only in one process.
        timeout_s: Deadline of the prediction on N processes.

    Raises:
        ConfigError: For a bundle without a medverse preset, or options that do not fit.
        InputError: If the image is too thin for the ranks at some layer (names ``source``).
    """

    def __init__(
        self,
        model: LoadedModel,
        volume: Volume,
        source: str | Path,
        *,
        ranks: int,
        device: str = "auto",
        mirror_tta: bool = False,
        precision: str = NetPrecision.AUTO,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if ranks < 1:
            raise ConfigError(f"--spatial-parallel needs 1 or more processes, got {ranks}")
        self.model, self.ranks, self.timeout_s = model, ranks, timeout_s
        self.device = _device(device, ranks)
        self.dtype = autocast_dtype(self.device, precision)
        if ranks > 1 and self.dtype is not None:
            raise ConfigError("--spatial-parallel with 2+ processes runs in float32 (--precision)")
        self.plan = whole_volume_plan(model, volume)
        grid = self.plan.patch_size
        self.axis = max(range(3), key=lambda a: grid[a])  # the longest axis gets the most ranks
        self.options = WindowOptions(overlap=0.0, batch_size=1, mirror=mirror_tta)
        if ranks > 1:
            _check(model, grid, ranks, self.axis, source)

    def describe(self) -> dict[str, str]:
        """The settings, as strings (for the report)."""
        return {
            "device": str(self.device),
            "backend": "torch",
            "precision": str(self.dtype).removeprefix("torch.") if self.dtype else "fp32",
            "window": "whole volume " + "x".join(str(n) for n in self.plan.patch_size),
            "spatial_parallel": str(self.ranks),
            "split_axis": _GRID_AXES[self.axis],
            "mirror_tta": str(self.options.mirror).lower(),
        }

    def predict(self, volume: Volume) -> LabelMap:
        """Segment ``volume`` (the image given at construction); labels on its grid."""
        oriented = self.model.oriented(volume)
        labels = predict_labels(oriented, self.plan, self._backend(), self.options, self.device)
        return self.model.restored(labels, volume)

    def _backend(self) -> Backend:
        network = self.model.network
        if self.ranks == 1:
            return TorchBackend(network, self.device, dtype=self.dtype, cpu_workers=1)
        nccl = self.device.type == "cuda"
        threads = max(1, torch.get_num_threads() // self.ranks)
        return SpatialRunner(
            network.eval(),
            self.ranks,
            self.axis,
            timeout_s=self.timeout_s,
            threads=threads,
            backend="nccl" if nccl else "gloo",
        )


def whole_volume_plan(model: LoadedModel, volume: Volume) -> Plan:
    """``model``'s plan with the window set to ``volume``'s whole model grid.

    The grid is padded up to a multiple of the network's stride, as a plan's patch is.

    Raises:
        ConfigError: If the model's preset is not a medverse preset (stride unknown).
    """
    try:
        stride = network_stride(model.preset)
    except ConfigError:
        raise ConfigError(
            f"whole-volume inference needs a medverse checkpoint; preset {model.preset!r} has "
            "no known network stride"
        ) from None
    oriented = model.oriented(volume)
    spacing = tuple(float(s) for s in model.plan.target_spacing)
    _, shape = grid_for_spacing(oriented.affine, oriented.shape, spacing)  # as prepare_volume
    whole = tuple(math.ceil(n / s) * s for n, s in zip(shape, stride, strict=True))
    return model.plan.model_copy(update={"patch_size": whole})


def _device(choice: str, ranks: int) -> torch.device:
    if choice not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {choice!r}; use auto, cpu or cuda")
    gpus = torch.cuda.device_count()
    if choice == "cuda" and gpus < ranks:
        raise ConfigError(
            f"--device cuda with {ranks} process(es) needs {ranks} GPU(s), found {gpus}"
        )
    use_cuda = choice == "cuda" or (choice == "auto" and gpus >= ranks)
    return torch.device("cuda" if use_cuda else "cpu")


def _check(
    model: LoadedModel, grid: tuple[int, int, int], ranks: int, axis: int, source: str | Path
) -> None:
    try:
        check_split(model.network, grid, ranks, axis)
    except SlabTooThinError as e:
        size = "x".join(str(n) for n in grid)
        name = _GRID_AXES[axis]  # the layers call the network's axis D, H or W
        problem = e.problem.replace(f"axis {AXIS_NAMES[axis]}", f"axis {name}")
        raise InputError(
            f"the image is {size} voxels on the model grid (at the plan's spacing, padded to "
            f"the network's stride), too thin to split over {ranks} processes along "
            f"{name}: {problem}",
            source,
        ) from None


def whole_volume_predictor(
    model: LoadedModel,
    volume: Volume,
    source: str | Path,
    ranks: int,
    options: Mapping[str, Any],
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> WholeVolumePredictor:
    """A `WholeVolumePredictor` from `segment`'s options (`PredictOptions`).

    Overlap and batch size do not apply (one window); device, precision and mirroring do.
    The backend is torch (``auto`` means torch here).

    Raises:
        ConfigError: For options that need windows or another backend (``--backend``,
            ``--onnx``, ``--provider``, ``--skip-air``).
    """
    if str(options.get("backend") or "auto") not in ("auto", "torch") or options.get("onnx_path"):
        raise ConfigError("--spatial-parallel runs the network in torch; drop --backend/--onnx")
    if options.get("provider") or options.get("skip_background"):
        raise ConfigError(
            "--provider and --skip-air are for windowed inference; --spatial-parallel runs "
            "one window, the whole volume"
        )
    return WholeVolumePredictor(
        model,
        volume,
        source,
        ranks=ranks,
        device=str(options.get("device", "auto")),
        mirror_tta=bool(options.get("mirror_tta", False)),
        precision=str(options.get("precision", NetPrecision.AUTO)),
        timeout_s=timeout_s,
    )
