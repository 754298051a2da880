"""The Predictor: a Volume in, a label map on the same native grid out (sliding window, torch)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from medverse.core.errors import ConfigError, ModelError
from medverse.core.logging import get_logger
from medverse.core.volume import LabelMap, Volume
from medverse.inference.resample_back import argmax_on_grid, probabilities_on_grid
from medverse.models.checkpoint import LoadedModel
from medverse.preprocessing.normalize import normalize_intensity
from medverse.preprocessing.resample import grid_for_spacing, resample_tensor, same_grid

_LOG = get_logger(__name__)

SPATIAL_DIMS = (2, 3, 4)
"""Spatial axes of a (batch, channel, i, j, k) tensor, the axes mirrored by test-time flips."""


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


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype on ``device``: bf16 where supported, else fp16; None on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def mirror_axes(enabled: bool) -> list[tuple[int, ...]]:
    """The flips test-time augmentation averages over: all 8 subsets of the 3 axes, or none."""
    if not enabled:
        return [()]
    return [c for n in range(4) for c in itertools.combinations(SPATIAL_DIMS, n)]


def channel_values(labels: Iterable[int]) -> list[int]:
    """Network channels kept for the argmax: background 0, then the plan's label values.

    The network predicts one channel per value up to the highest label (``Plan.num_classes``),
    so channel ``v`` is label ``v``; channels of values the plan does not name are dropped.
    """
    return [0, *sorted(int(v) for v in labels if int(v) != 0)]


class Predictor:
    """Segment Volumes with a loaded model, the way the model's plan preprocessed its training.

    Steps: normalise intensities per the plan, resample to the plan's spacing, Gaussian-weighted
    sliding-window inference over ``plan.patch_size`` patches, softmax, trilinear resampling of
    the probabilities back to the input grid, argmax. On CUDA the network runs under autocast
    and all tensors stay on the device; on the CPU it runs in float32.

    Args:
        model: A checkpoint loaded with ``load_checkpoint``.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        overlap: Fraction of overlap between neighbouring windows (0.5 = about 2x the windows
            per axis of 0, i.e. up to 8x the compute in 3D).
        sw_batch_size: Windows per forward pass (GPU memory vs. speed).
        mirror_tta: Average over the 8 axis mirrorings (8x the compute).
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        device: str = "auto",
        overlap: float = 0.5,
        sw_batch_size: int = 4,
        mirror_tta: bool = False,
    ) -> None:
        if not 0.0 <= overlap < 1.0:
            raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
        if sw_batch_size < 1:
            raise ConfigError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        self.device = resolve_device(device)
        self.plan = model.plan
        self.labels = {int(v): str(n) for v, n in self.plan.labels.items() if int(v) != 0}
        self.channel_values = channel_values(self.labels)
        self.network = model.network.to(self.device).eval()
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.mirror_tta = mirror_tta

    @torch.inference_mode()
    def predict(self, volume: Volume) -> LabelMap:
        """Segment ``volume``; the label map has the same shape and affine as the input."""
        probs, affine = self._probabilities_on_plan_grid(volume)
        if same_grid(affine, probs.shape[1:], volume.affine, volume.shape):
            channels = probs.argmax(dim=0)
        else:
            channels = argmax_on_grid(probs, affine, volume.affine, volume.shape)
        lut = torch.as_tensor(self.channel_values, device=channels.device)
        values = lut[channels].cpu().numpy()
        dtype = np.uint8 if max(self.channel_values) < 256 else np.uint16
        return LabelMap(
            array=values.astype(dtype),
            affine=volume.affine,
            meta=dict(volume.meta),
            labels=self.labels,
        )

    @torch.inference_mode()
    def predict_probabilities(self, volume: Volume) -> np.ndarray:
        """Class probabilities on the input grid, ``(C, *volume.shape)`` float32.

        Channel 0 is background; channel ``c`` is label value ``channel_values[c]`` (the
        network channels of the plan's labels, ascending).
        """
        probs, affine = self._probabilities_on_plan_grid(volume)
        if not same_grid(affine, probs.shape[1:], volume.affine, volume.shape):
            probs = probabilities_on_grid(probs, affine, volume.affine, volume.shape)
        return probs.float().cpu().numpy()

    def _probabilities_on_plan_grid(self, volume: Volume) -> tuple[torch.Tensor, np.ndarray]:
        """Softmax probabilities ``(C, ...)`` on the plan's grid, and that grid's affine."""
        image, affine = self._preprocess(volume)
        return self._mirrored_softmax(image[None, None]), affine

    def _preprocess(self, volume: Volume) -> tuple[torch.Tensor, np.ndarray]:
        """Normalised image on the plan's spacing (same extent and centre), on the device."""
        raw = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))
        raw = raw.to(self.device)
        image = normalize_intensity(raw, self.plan)
        spacing = tuple(float(s) for s in self.plan.target_spacing)
        affine, shape = grid_for_spacing(volume.affine, volume.shape, spacing)
        image = resample_tensor(image, volume.affine, affine, shape, order=1, padding="border")
        return image, affine

    def _mirrored_softmax(self, image: torch.Tensor) -> torch.Tensor:
        """Mean softmax over the mirrorings (just the identity without TTA), ``(C, ...)``."""
        total: torch.Tensor | None = None
        flips = mirror_axes(self.mirror_tta)
        for axes in flips:
            flipped = image.flip(axes) if axes else image
            logits = self._plan_channels(self._sliding_window(flipped))
            probs = torch.softmax(logits.float(), dim=1)
            probs = probs.flip(axes) if axes else probs
            total = probs if total is None else total + probs
        assert total is not None
        return (total / len(flips))[0]

    def _sliding_window(self, image: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            logits = sliding_window_inference(
                inputs=image,
                roi_size=tuple(int(p) for p in self.plan.patch_size),
                sw_batch_size=self.sw_batch_size,
                predictor=self.network,
                overlap=self.overlap,
                mode="gaussian",
                sw_device=self.device,
                device=self.device,
            )
        assert isinstance(logits, torch.Tensor)
        return logits

    @contextmanager
    def _autocast(self) -> Iterator[None]:
        dtype = autocast_dtype(self.device)
        context = torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()
        with context:
            yield

    def _plan_channels(self, logits: torch.Tensor) -> torch.Tensor:
        """Keep only the logits of background and of the plan's labels.

        Unnamed channels go before the softmax, so the kept probabilities sum to one, which
        the linear resampling to the native grid relies on.
        """
        self._check_channels(int(logits.shape[1]))
        if self.channel_values == list(range(logits.shape[1])):
            return logits
        return logits[:, self.channel_values]

    def _check_channels(self, channels: int) -> None:
        if channels != self.plan.num_classes:
            raise ModelError(
                f"network predicts {channels} classes but the plan needs "
                f"{self.plan.num_classes} (background and label values up to "
                f"{self.plan.num_classes - 1})"
            )
