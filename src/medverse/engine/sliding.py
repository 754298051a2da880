"""One sliding-window prediction path for every caller: the Predictor, validation, evaluation.

A Volume goes to the model grid on the device (`model_input`), through the windows
(`windows`, `runner`) and back to its native grid as labels (`native_labels`) or
probabilities. Callers choose only the backend and the `WindowOptions`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from medverse.core.volume import LabelMap, Volume
from medverse.engine.backends import torch_threads
from medverse.engine.model_input import ModelInput, prepare_volume
from medverse.engine.native_labels import NativeLabels
from medverse.engine.runner import Backend, WindowJob, WindowRunner
from medverse.engine.sinks import (
    GridLabels,
    GridLogits,
    argmax_through_grid_sample,
    channel_values,
    label_dtype,
)
from medverse.engine.windows import WindowBlender
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import resample_tensor, same_grid
from medverse.preprocessing.taps import axis_map


@dataclass(frozen=True)
class WindowOptions:
    """How the windows run.

    Attributes:
        overlap: Fraction of a window shared with each neighbour (0.5: about 8x the windows
            of 0 in 3D).
        batch_size: Windows per network call.
        mirror: Mirroring test-time augmentation (8x the compute).
        skip_background: Skip windows holding only air/background (see
            `medverse.engine.model_input.background_level`); their voxels become background.
        half_accumulators: Blend in float16 (half the memory; for GPUs).
        coarse_first: Per z-band, a covering subset of the windows first, the others only
            near structures (`medverse.engine.coarse_first`).
        pipelined: Run the network in a background thread while the caller's thread blends
            the previous batch and maps finished slabs (CPU: both cores stay busy).
    """

    overlap: float = 0.5
    batch_size: int = 4
    mirror: bool = False
    skip_background: bool = False
    half_accumulators: bool = False
    coarse_first: bool = False
    pipelined: bool = False


GLUE_THREADS = 1
"""Intra-op threads of the CPU work around the network (resampling, blending, labels)."""


@contextmanager
def cpu_glue(device: torch.device) -> Iterator[None]:
    """`GLUE_THREADS` intra-op threads in the calling thread on a CPU (nothing on a GPU).

    The work around the network is memory-bound and made of many short operations over
    blocks; while the window workers (or other processes) keep the cores busy, OpenMP's fork
    and join per operation costs far more than it saves (measured on a shared 2-core machine:
    a 512x512x300 CT predicted in half the time). Backends keep their own thread counts.
    """
    if device.type != "cpu":
        yield
        return
    with torch_threads(GLUE_THREADS):
        yield


def make_runner(backend: Backend, plan: Plan, options: WindowOptions) -> WindowRunner:
    """A `WindowRunner` for ``plan``'s model: keeps background and the plan's label channels."""
    return WindowRunner(
        backend,
        batch_size=options.batch_size,
        channels=channel_values(plan.labels),
        expected_channels=plan.num_classes,
        mirror=options.mirror,
        pipelined=options.pipelined,
    )


def make_blender(
    image: torch.Tensor, plan: Plan, options: WindowOptions, skip_below: float | None = None
) -> WindowBlender:
    """The windows of one ``(X, Y, Z)`` model-grid image."""
    return WindowBlender(
        image,
        plan.patch_size,
        options.overlap,
        len(channel_values(plan.labels)),
        skip_below=skip_below if options.skip_background else None,
        accumulate_dtype=torch.float16 if options.half_accumulators else torch.float32,
        coarse_first=options.coarse_first,
    )


class LabelJob:
    """One Volume on its way to labels on its native grid.

    Args:
        volume: The image.
        plan: The model's plan.
        options: Window options.
        device: Compute device.
        tag: Anything the caller wants back.
    """

    def __init__(
        self, volume: Volume, plan: Plan, options: WindowOptions, device: torch.device, tag: object
    ) -> None:
        self.volume = volume
        self.plan = plan
        self.values = channel_values(plan.labels)
        model_input = prepare_volume(volume, plan, device)
        self.sink = _label_sink(model_input, self.values)
        blender = make_blender(model_input.image, plan, options, model_input.skip_below)
        self.job = WindowJob(blender, self.sink, tag=tag)

    def result(self) -> LabelMap:
        """The label map, once the job has finished."""
        sink = self.sink
        if isinstance(sink, NativeLabels):
            array = sink.labels
        elif isinstance(sink, GridLabels):
            array = sink.array()
        else:
            array = sink.labels()
        names = {int(v): str(n) for v, n in self.plan.labels.items() if int(v) != 0}
        volume = self.volume
        return LabelMap(array=array, affine=volume.affine, meta=dict(volume.meta), labels=names)


class _GeneralLabels(GridLogits):
    """Fallback for grids that are not axis-aligned: all logits, then grid_sample in slabs."""

    def __init__(self, model_input: ModelInput, values: list[int]) -> None:
        super().__init__(len(values), model_input.shape, model_input.image.device)
        self.input = model_input
        self.values = values

    def labels(self) -> np.ndarray:
        probs = torch.softmax(self.logits, dim=0)
        channels = argmax_through_grid_sample(
            probs, self.input.affine, self.input.native_affine, self.input.native_shape
        )
        lut = torch.as_tensor(self.values, device=channels.device)
        return lut[channels].cpu().numpy().astype(label_dtype(self.values))


def _label_sink(
    model_input: ModelInput, values: list[int]
) -> NativeLabels | GridLabels | _GeneralLabels:
    device = model_input.image.device
    if same_grid(
        model_input.affine, model_input.shape, model_input.native_affine, model_input.native_shape
    ):
        return GridLabels(model_input.shape, values, device)
    mapping = axis_map(model_input.affine, model_input.native_affine)
    if mapping is None:
        return _GeneralLabels(model_input, values)
    return NativeLabels(model_input.shape, model_input.native_shape, mapping, values, device)


def predict_labels(
    volume: Volume, plan: Plan, backend: Backend, options: WindowOptions, device: torch.device
) -> LabelMap:
    """Segment one Volume: labels on its native grid (same shape and affine).

    Raises:
        ModelError: If the network's class count does not fit the plan.
    """
    with cpu_glue(device):
        job = LabelJob(volume, plan, options, device, tag=None)
        runner = make_runner(backend, plan, options)
        runner.submit(job.job)
        runner.run()
        return job.result()


def predict_probabilities(
    volume: Volume, plan: Plan, backend: Backend, options: WindowOptions, device: torch.device
) -> np.ndarray:
    """Class probabilities ``(C, *volume.shape)`` float32 on the native grid.

    Channel 0 is background; channel ``c`` is label value ``channel_values(plan.labels)[c]``.
    """
    with cpu_glue(device):
        model_input = prepare_volume(volume, plan, device)
        values = channel_values(plan.labels)
        sink = GridLogits(len(values), model_input.shape, device)
        runner = make_runner(backend, plan, options)
        blender = make_blender(model_input.image, plan, options, model_input.skip_below)
        runner.submit(WindowJob(blender, sink))
        runner.run()
        probs = torch.softmax(sink.logits, dim=0)
        if not same_grid(model_input.affine, model_input.shape, volume.affine, volume.shape):
            probs = resample_tensor(
                probs, model_input.affine, volume.affine, volume.shape, order=1, padding="border"
            )
        return probs.float().cpu().numpy()


def predict_grid_labels(
    image: torch.Tensor, plan: Plan, backend: Backend, options: WindowOptions
) -> torch.Tensor:
    """Label values ``(X, Y, Z)`` (int64, image's device) of an image already on the model grid.

    Args:
        image: ``(X, Y, Z)`` or ``(1, X, Y, Z)`` normalised image on the plan's grid.
        plan: The model's plan.
        backend: The network.
        options: Window options (``skip_background`` is ignored: no raw intensities here).
    """
    image = image[0] if image.ndim == 4 else image
    shape = (int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))
    with cpu_glue(image.device):
        sink = GridLabels(shape, channel_values(plan.labels), image.device)
        runner = make_runner(backend, plan, options)
        runner.submit(WindowJob(make_blender(image, plan, options), sink))
        runner.run()
    return sink.labels
