"""The shared window engine: MONAI's placement and blend, z-slabs, skipping, mixed batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.inferers.utils import _get_scan_interval

from medverse.core.errors import ModelError
from medverse.engine.backends import torch_threads
from medverse.engine.runner import WindowJob, WindowRunner
from medverse.engine.windows import (
    EMPTY_LOGIT,
    SIGMA_SCALE,
    Slab,
    WindowBlender,
    gaussian_weights,
    window_grid,
)
from medverse.models.factory import build_network
from medverse.preprocessing.normalize import normalize_intensity
from tests.inference.helpers import hippo_plan, read_hippo

ROI = (16, 24, 16)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread, as the engine's CPU path uses.

    With many small windows, the tests would otherwise wait on OpenMP's fork and join on a
    busy machine.
    """
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """A real MR crop, normalised: (35, 51, 35)."""
    volume, _ = read_hippo()
    return torch.from_numpy(normalize_intensity(np.asarray(volume.array), hippo_plan()))


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("unet_small", 1, 3).eval()


class Collect:
    """A sink keeping every slab."""

    def __init__(self) -> None:
        self.slabs: list[Slab] = []

    def __call__(self, slab: Slab) -> None:
        self.slabs.append(slab)

    def logits(self) -> torch.Tensor:
        return torch.cat([s.full() for s in self.slabs], dim=-1)


def run(
    image: torch.Tensor, network: torch.nn.Module, roi: tuple[int, int, int], **kwargs: object
) -> tuple[Collect, WindowBlender]:
    sink = Collect()
    blender = WindowBlender(image, roi, float(kwargs.pop("overlap", 0.5)), 3, **kwargs)  # type: ignore[arg-type]
    runner = WindowRunner(network, batch_size=3)
    runner.submit(WindowJob(blender, sink))
    runner.run()
    return sink, blender


@pytest.mark.parametrize(
    ("shape", "overlap"),
    [((35, 51, 35), 0.5), ((35, 51, 35), 0.25), ((100, 17, 64), 0.0), ((10, 24, 97), 0.7)],
)
def test_windows_sit_where_monai_puts_them(shape: tuple[int, int, int], overlap: float) -> None:
    grid = window_grid(shape, ROI, overlap)
    interval = _get_scan_interval(grid.padded, ROI, 3, (overlap,) * 3)
    theirs = {tuple(s.start for s in sl) for sl in dense_patch_slices(grid.padded, ROI, interval)}
    assert set(grid.starts) == theirs and len(grid.starts) == len(theirs)
    assert [s[2] for s in grid.starts] == sorted(s[2] for s in grid.starts)  # z-major order


@pytest.mark.parametrize("roi", [ROI, (40, 24, 48)])  # the second pads x and z
def test_blended_logits_equal_monai_gaussian_sliding_window(
    image: torch.Tensor, network: torch.nn.Module, roi: tuple[int, int, int]
) -> None:
    sink, blender = run(image, network, roi)
    with torch.inference_mode():
        expected = sliding_window_inference(
            image[None, None], roi, 4, network, overlap=0.5, mode="gaussian"
        )[0]
    ours = sink.logits()
    assert ours.shape == expected.shape
    assert torch.allclose(ours, torch.as_tensor(expected), atol=1e-5)
    assert blender.windows_run == blender.windows == len(blender.grid.starts)


@pytest.mark.parametrize("skip_below", [None, -1.0])
def test_every_window_runs_when_none_is_all_air(skip_below: float | None) -> None:
    """Also where padding is uneven: x pads 39 -> 40 by 0 before and 1 after."""
    image = torch.zeros((39, 30, 31))
    blender = WindowBlender(image, (40, 24, 32), 0.5, 1, skip_below=skip_below)
    assert blender.grid == window_grid(image.shape, (40, 24, 32), 0.5)
    assert blender.grid.pad == (0, 0, 0) and blender.grid.padded == (40, 30, 32)
    assert blender.windows == blender.windows_run == 2 and blender.origin == (0, 0, 0)


def test_slabs_come_in_order_and_early(image: torch.Tensor, network: torch.nn.Module) -> None:
    """The first slab is handed out after the first band of windows, not at the end."""
    blender = WindowBlender(image, ROI, 0.5, 3)
    bands = blender.grid.z_starts
    first_band = [s for s in blender.grid.starts if s[2] == bands[0]]
    with torch.inference_mode():
        for _, patch in zip(first_band, blender.patches()):
            blender.add(network(patch[None])[0])
    (slab,) = blender.take_slabs()
    assert (slab.start, slab.stop) == (0, bands[1])
    assert blender.take_slabs() == []
    # the running sums span one window depth, not the image
    assert blender._sums is not None and blender._sums.shape[-1] == ROI[2]


def test_skipping_air_windows_changes_no_logit_of_a_non_air_voxel(
    network: torch.nn.Module,
) -> None:
    """Windows keep the whole image's places; only those holding nothing but air are dropped."""
    image = torch.full((48, 48, 48), -3.0)
    image[4:20, 6:22, 5:15] = torch.linspace(-1, 2, 16 * 16 * 10).reshape(16, 16, 10)
    sink, blender = run(image, network, (16, 16, 16), overlap=0.0, skip_below=-2.0)
    assert blender.origin == (0, 0, 0) and blender.grid.shape == (32, 32, 16)
    assert blender.windows == blender.windows_run == 4  # 2 x 2 x 1 windows touch the object
    logits = sink.logits()
    assert logits.shape == (3, 48, 48, 48)
    assert [s.start for s in sink.slabs] == sorted(s.start for s in sink.slabs)
    outside = torch.ones((48, 48, 48), dtype=torch.bool)
    outside[:32, :32, :16] = False
    assert torch.all(logits[0][outside] == 0) and torch.all(logits[1:][:, outside] == EMPTY_LOGIT)
    full, everything = run(image, network, (16, 16, 16), overlap=0.0)
    assert everything.windows_run == 27
    assert torch.allclose(logits[:, :32, :32, :16], full.logits()[:, :32, :32, :16], atol=1e-5)


def test_air_windows_between_objects_are_skipped_and_overlaps_stay_exact(
    network: torch.nn.Module,
) -> None:
    image = torch.full((48, 48, 48), -3.0)
    image[2:10, 3:9, 4:12] = 1.0
    image[40:46, 38:47, 33:44] = 0.5
    sink, blender = run(image, network, (16, 16, 16), overlap=0.0, skip_below=-2.0)
    assert blender.origin == (0, 0, 0) and blender.windows == 27
    assert blender.windows_run == 2  # one window holds each object
    logits = sink.logits()
    assert torch.all(logits[1:, 20:30, 20:30, 20:30] == EMPTY_LOGIT)  # a skipped window
    assert not torch.all(logits[1:, 40:46, 38:47, 33:44] == EMPTY_LOGIT)
    # with overlap, a non-air voxel gets the blend of every window over it, as without skipping
    image = torch.full((48, 48, 48), -3.0)
    image[10:16, 10:16, 8:16] = 1.0  # inside the windows at 0 and at 12 along every axis
    sink, blender = run(image, network, (24, 24, 24), overlap=0.5, skip_below=-2.0)
    full, everything = run(image, network, (24, 24, 24), overlap=0.5)
    assert (blender.windows_run, everything.windows_run) == (8, 27)
    body = image > -2.0
    assert torch.allclose(sink.logits()[:, body], full.logits()[:, body], atol=1e-5)
    empty, nothing = run(torch.full((30, 30, 30), -3.0), network, (16, 16, 16), skip_below=-2.0)
    assert nothing.windows_run == 0 and torch.all(empty.logits().argmax(0) == 0)
    assert empty.logits().shape == (3, 30, 30, 30)


def test_windows_of_two_studies_share_batches(
    image: torch.Tensor, network: torch.nn.Module
) -> None:
    other = image[:30, :40, :].flip(0).contiguous() * 0.7
    alone = [run(x, network, ROI)[0].logits() for x in (image, other)]
    sizes: list[int] = []

    def backend(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(int(batch.shape[0]))
        return network(batch)

    runner = WindowRunner(backend, batch_size=5)
    sinks = [Collect(), Collect()]
    for x, sink in zip((image, other), sinks):
        runner.submit(WindowJob(WindowBlender(x, ROI, 0.5, 3), sink))
    finished = runner.run()
    assert len(finished) == 2
    counts = [len(window_grid(x.shape, ROI, 0.5).starts) for x in (image, other)]
    assert counts[0] % 5 != 0 and sizes[:-1] == [5] * (len(sizes) - 1)  # a batch held both
    assert sum(sizes) == sum(counts) == runner.windows_run
    for sink, expected in zip(sinks, alone):
        assert torch.allclose(sink.logits(), expected, atol=1e-5)


def test_pipelined_runner_gives_the_same_logits_with_the_network_in_a_thread(
    image: torch.Tensor, network: torch.nn.Module
) -> None:
    """The network runs one batch ahead in a background thread; the blend is unchanged."""
    other = image[:30, :40, :].flip(0).contiguous() * 0.7
    threads: set[str] = set()

    def backend(batch: torch.Tensor) -> torch.Tensor:
        threads.add(threading.current_thread().name)
        with torch_threads(1):
            return network(batch)

    results = {}
    for pipelined in (False, True):
        runner = WindowRunner(backend, batch_size=2, pipelined=pipelined)
        sinks = [Collect(), Collect()]
        for x, sink in zip((image, other), sinks):
            runner.submit(WindowJob(WindowBlender(x, ROI, 0.5, 3), sink))
        assert len(runner.run()) == 2 and not runner.busy
        results[pipelined] = [sink.logits() for sink in sinks]
    assert any(name.startswith("medverse-network") for name in threads)
    for plain, pipelined_logits in zip(results[False], results[True]):
        assert torch.equal(plain, pipelined_logits)


def test_mirroring_a_pointwise_network_changes_nothing(image: torch.Tensor) -> None:
    pointwise = torch.nn.Conv3d(1, 3, kernel_size=1)
    plain = WindowRunner(pointwise, batch_size=2).predict(image[None, None, :16, :24, :16])
    mirrored = WindowRunner(pointwise, batch_size=2, mirror=True).predict(
        image[None, None, :16, :24, :16]
    )
    assert torch.allclose(plain, mirrored, atol=1e-6)


def test_channel_selection_and_a_wrong_class_count() -> None:
    runner = WindowRunner(torch.nn.Conv3d(1, 5, 1), batch_size=1, channels=[0, 2, 4])
    assert runner.predict(torch.zeros((1, 1, 4, 4, 4))).shape[1] == 3
    wrong = WindowRunner(torch.nn.Conv3d(1, 5, 1), batch_size=1, expected_channels=3)
    with pytest.raises(ModelError, match="predicts 5 classes but the plan needs 3"):
        wrong.predict(torch.zeros((1, 1, 4, 4, 4)))


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        window_grid((10, 10, 10), (4, 4, 4), 1.0)
    with pytest.raises(ValueError, match="3 positive sizes"):
        window_grid((10, 10), (4, 4, 4), 0.5)
    with pytest.raises(ValueError, match="batch_size"):
        WindowRunner(torch.nn.Identity(), batch_size=0)


@pytest.mark.parametrize("roi", [(96, 96, 96), (64, 80, 48), (16, 24, 16), (1, 5, 7)])
def test_gaussian_weights_are_monais_bit_for_bit(roi: tuple[int, int, int]) -> None:
    """The blend weights, built without importing MONAI, equal MONAI's importance map."""
    ours = gaussian_weights(roi, torch.device("cpu"))
    theirs = compute_importance_map(
        roi, mode="gaussian", sigma_scale=SIGMA_SCALE, device="cpu", dtype=torch.float32
    )
    assert ours.dtype == torch.float32
    assert torch.equal(ours, theirs)
