"""Between the native grid and the model grid: fused preprocessing, labels streamed back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medverse.core.volume import Volume
from medverse.engine.model_input import AIR_HU, prepare_volume
from medverse.engine.native_labels import NativeLabels
from medverse.engine.sinks import argmax_through_grid_sample
from medverse.engine.windows import Slab
from medverse.preprocessing.normalize import intensity_map, normalize_intensity
from medverse.preprocessing.resample import grid_for_spacing, resample_tensor
from medverse.preprocessing.taps import axis_map
from tests.inference.helpers import ct_plan, hippo_plan, read_ct, read_hippo


@pytest.fixture(scope="module")
def ct() -> Volume:
    """The real 512 x 512 x 20 CT series, cropped in-plane to keep the tests quick."""
    volume, _ = read_ct()
    return Volume(np.asarray(volume.array)[96:416, 128:384], volume.affine, volume.meta)


def test_model_input_equals_normalise_then_resample(ct: Volume) -> None:
    plan = ct_plan((1.5, 1.5, 2.0))
    prepared = prepare_volume(ct, plan, torch.device("cpu"))
    affine, shape = grid_for_spacing(ct.affine, ct.shape, plan.target_spacing)
    normalised = torch.from_numpy(normalize_intensity(np.asarray(ct.array), plan))
    expected = resample_tensor(normalised, ct.affine, affine, shape, order=1, padding="border")
    assert np.allclose(prepared.affine, affine) and prepared.shape == shape
    assert torch.allclose(prepared.image, expected, atol=1e-4)
    assert prepared.skip_below == pytest.approx((max(AIR_HU, -160.0) - 40.0) / 100.0)


def test_unclipped_int16_is_normalised_after_resampling_with_the_same_result(ct: Volume) -> None:
    """A window wider than int16 never clips, so normalising after resampling is exact."""
    plan = ct_plan((1.5, 1.5, 2.0)).model_copy(update={"clip_low": -1e6, "clip_high": 1e6})
    int16 = Volume(np.asarray(ct.array).astype(np.int16), ct.affine)
    raw = torch.from_numpy(np.asarray(int16.array))
    assert not intensity_map(raw, plan).clips(raw.dtype)
    assert intensity_map(raw, ct_plan()).clips(raw.dtype)
    prepared = prepare_volume(int16, plan, torch.device("cpu"))
    affine, shape = grid_for_spacing(ct.affine, ct.shape, plan.target_spacing)
    normalised = torch.from_numpy(normalize_intensity(np.asarray(int16.array), plan))
    expected = resample_tensor(normalised, ct.affine, affine, shape, order=1, padding="border")
    assert torch.allclose(prepared.image, expected, atol=1e-4)


def test_zscore_model_input_is_bit_for_bit_what_training_saw() -> None:
    """On the same grid the fused preprocessing gives the very float32 values of training."""
    image, _ = read_hippo()
    plan = hippo_plan()
    expected = normalize_intensity(np.asarray(image.array), plan)
    prepared = prepare_volume(image, plan, torch.device("cpu"))
    assert prepared.shape == image.shape and np.array_equal(prepared.image.numpy(), expected)


def smooth_logits(ct: Volume, affine: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    """Realistic 3-class logits on a model grid: soft thresholds of the real CT."""
    hu = resample_tensor(
        torch.from_numpy(np.asarray(ct.array, np.float32)), ct.affine, affine, shape, order=1
    )
    return torch.stack([torch.zeros_like(hu), hu / 40.0, (hu - 150.0) / 20.0])


@pytest.mark.parametrize(("slab", "noise"), [(1, 0.0), (7, 0.0), (1000, 0.0), (5, 3.0)])
def test_streamed_native_labels_equal_full_interpolation(
    ct: Volume, slab: int, noise: float
) -> None:
    """Streamed native labels equal the argmax of fully interpolated probabilities.

    Only boundary cells are interpolated (or all, when noise puts boundaries everywhere).
    """
    affine, shape = grid_for_spacing(ct.affine, ct.shape, (2.1, 1.7, 3.0))
    logits = smooth_logits(ct, affine, shape)
    logits += noise * torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    mapping = axis_map(affine, ct.affine)
    assert mapping is not None
    sink = NativeLabels(shape, ct.shape, mapping, [0, 1, 5], torch.device("cpu"))
    for k0 in range(0, shape[2], slab):
        sink(Slab(k0, logits[..., k0 : k0 + slab]))
    probs = torch.softmax(logits, dim=0)
    expected = argmax_through_grid_sample(probs, affine, ct.affine, ct.shape).numpy()
    lut = np.array([0, 1, 5])
    assert sink.labels.shape == ct.shape and sink.labels.dtype == np.uint8
    assert set(np.unique(sink.labels)) == {0, 1, 5}
    assert (sink.labels == lut[expected]).mean() > 1 - 1e-5  # grid_sample rounds coordinates
    fast = resample_tensor(probs, affine, ct.affine, ct.shape, order=1, padding="border")
    assert np.array_equal(sink.labels, lut[fast.argmax(0).numpy()])


@pytest.mark.parametrize(("corner", "noise"), [((0, 30), 0.0), ((40, 25), 0.0), ((40, 25), 3.0)])
def test_labels_from_box_slabs_equal_labels_from_whole_slices(
    ct: Volume, corner: tuple[int, int], noise: float
) -> None:
    """Slabs that carry only the windows' box (background elsewhere) give the same labels."""
    affine, shape = grid_for_spacing(ct.affine, ct.shape, (2.1, 1.7, 3.0))
    logits = smooth_logits(ct, affine, shape)
    logits += noise * torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    x0, y0 = corner
    box = logits[:, x0 : x0 + 90, y0 : y0 + 80]
    mapping = axis_map(affine, ct.affine)
    assert mapping is not None
    sinks = [NativeLabels(shape, ct.shape, mapping, [0, 1, 5], torch.device("cpu")) for _ in "ab"]
    for k0 in range(0, shape[2], 4):
        slab = Slab(k0, box[..., k0 : k0 + 4], corner=corner, plane=shape[:2])
        sinks[0](slab)
        sinks[1](Slab(k0, slab.full()))
    assert np.array_equal(sinks[0].labels, sinks[1].labels)
    assert set(np.unique(sinks[0].labels)) == {0, 1, 5}
