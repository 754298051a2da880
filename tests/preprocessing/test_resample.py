"""The one resampler: identity, label round trips, exact flips, linear accuracy, path parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medverse.core.volume import LabelMap, Volume
from medverse.io.nifti import read_nifti, read_nifti_labels
from medverse.preprocessing import resample
from medverse.preprocessing.normalize import intensity_map, normalize_intensity
from medverse.preprocessing.resample import (
    grid_for_spacing,
    resample_tensor,
    resample_to_grid,
    resample_to_spacing,
)
from medverse.preprocessing.taps import axis_map
from tests.conftest import CT_LABELS, HIPPOCAMPUS, SHARED_DATA
from tests.inference.helpers import ct_plan

HIPPO_IMAGE = HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz"
HIPPO_LABEL = HIPPOCAMPUS / "labelsTr" / "hippocampus_001.nii.gz"
EXAMPLE_CT = SHARED_DATA / "totalsegmentator_example_ct" / "example_ct_sm.nii.gz"
CT_WINDOW = ct_plan((1.5, 1.5, 2.0))  # soft-tissue window: clips air and bone


def flip_i(shape: tuple[int, int, int]) -> np.ndarray:
    """Index map i -> n-1-i (the DICOM grid of the CT labels runs x the other way)."""
    flip = np.eye(4)
    flip[0, 0] = -1.0
    flip[0, 3] = shape[0] - 1
    return flip


def test_identity_returns_the_same_voxels() -> None:
    image = read_nifti(HIPPO_IMAGE)
    label = read_nifti_labels(HIPPO_LABEL)
    same = resample_to_spacing(image, image.spacing, order=1)
    np.testing.assert_array_equal(same.array, image.array)
    np.testing.assert_allclose(same.affine, image.affine)
    same_label = resample_to_grid(label, label.affine, label.shape, order=0)
    np.testing.assert_array_equal(same_label.array, label.array)
    assert same_label.array.dtype == label.array.dtype


def test_label_to_finer_grid_and_back(tmp_path: object) -> None:
    label = read_nifti_labels(HIPPO_LABEL)
    fine = resample_to_spacing(label, (0.7, 0.6, 0.8), order=0)
    assert isinstance(fine, LabelMap) and fine.labels == label.labels
    assert fine.spacing == pytest.approx((0.7, 0.6, 0.8))
    assert set(np.unique(fine.array)) <= set(np.unique(label.array))  # no new values
    back = resample_to_grid(fine, label.affine, label.shape, order=0)
    assert np.mean(back.array == label.array) >= 0.99


def test_ras_label_map_onto_flipped_grid_is_exactly_flipped() -> None:
    labels = read_nifti_labels(CT_LABELS)
    target = labels.affine @ flip_i(labels.shape)
    out = resample_to_grid(labels, target, labels.shape, order=0)
    np.testing.assert_array_equal(out.array, np.flip(labels.array, axis=0))
    np.testing.assert_allclose(out.affine, target)


def test_spacing_change_keeps_centre_extent_and_directions() -> None:
    labels = read_nifti_labels(CT_LABELS)  # 512x512x20, 0.977x0.977x2 mm, x flipped
    affine, shape = grid_for_spacing(labels.affine, labels.shape, (1.5, 1.5, 1.5))
    assert shape == (333, 333, 27)
    out = Volume(np.zeros(shape), affine)
    assert out.spacing == pytest.approx((1.5, 1.5, 1.5))
    centre_in = labels.index_to_world((np.array(labels.shape) - 1) / 2)
    centre_out = out.index_to_world((np.array(shape) - 1) / 2)
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)
    assert np.all(np.sign(np.diag(affine)[:3]) == np.sign(np.diag(labels.affine)[:3]))


def test_linear_resampling_reproduces_a_linear_field() -> None:
    """Voxel centres line up: a field linear in world mm is reproduced on another grid."""
    source = read_nifti(HIPPO_IMAGE)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in source.shape], indexing="ij"), -1)
    world = source.index_to_world(ijk)
    field = source.with_array((world @ np.array([1.0, -2.0, 0.5])).astype(np.float64))
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    target = np.eye(4)
    target[:3, :3] = rotation * 0.7
    target[:3, 3] = source.index_to_world(np.array([20.0, 10.0, 10.0]))
    out = resample_to_grid(field, target, (12, 14, 15), order=1)
    expected = out.index_to_world(
        np.stack(np.meshgrid(*[np.arange(n) for n in out.shape], indexing="ij"), -1)
    ) @ np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(out.array, expected, atol=1e-6)


def test_tensor_api_keeps_batch_channels_and_integer_dtype() -> None:
    label = read_nifti_labels(HIPPO_LABEL)
    tensor = torch.from_numpy(np.stack([label.array, label.array])[None]).to(torch.int64)
    target, shape = grid_for_spacing(label.affine, label.shape, (2.0, 2.0, 2.0))
    out = resample_tensor(tensor, label.affine, target, shape, order=0)
    assert out.shape == (1, 2, *shape) and out.dtype == torch.int64
    expected = resample_to_grid(label, target, shape, order=0).array
    np.testing.assert_array_equal(out[0, 1].numpy(), expected)


def test_label_maps_refuse_linear_interpolation() -> None:
    label = read_nifti_labels(HIPPO_LABEL)
    with pytest.raises(ValueError, match="order=0"):
        resample_to_spacing(label, (2.0, 2.0, 2.0), order=1)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    image = read_nifti(HIPPO_IMAGE)
    cpu = resample_to_spacing(image, (0.7, 0.8, 1.3), order=1)
    gpu = resample_to_spacing(image, (0.7, 0.8, 1.3), order=1, device="cuda")
    np.testing.assert_allclose(gpu.array, cpu.array, rtol=1e-4, atol=1e-3)
    labels = read_nifti_labels(CT_LABELS)
    target = labels.affine @ flip_i(labels.shape)
    out = resample_to_grid(labels, target, labels.shape, order=0, device="cuda")
    np.testing.assert_array_equal(out.array, np.flip(labels.array, axis=0))


@pytest.mark.parametrize("spacing", [(1.5, 1.5, 2.0), (0.6, 2.3, 0.7), (3.0, 3.0, 3.0)])
def test_block_path_equals_grid_sample_on_real_ct(spacing: tuple[float, float, float]) -> None:
    """Grids that share their axes take the block-wise path; grid_sample gives the same values."""
    ct = read_nifti(EXAMPLE_CT)
    affine, shape = grid_for_spacing(ct.affine, ct.shape, spacing)
    assert axis_map(ct.affine, affine) is not None
    data = torch.from_numpy(np.asarray(ct.array, dtype=np.float32))
    fast = resample_tensor(data, ct.affine, affine, shape, order=1, padding="border")
    mapping = np.linalg.inv(ct.affine) @ affine
    general = resample._resample_general(data, mapping, shape, 1, "border", None)
    assert fast.shape == general.shape == shape and fast.dtype == torch.float32
    hu_range = float(data.max() - data.min())
    assert float((fast - general).abs().max()) <= 1e-5 * hu_range


def test_numpy_and_torch_inputs_give_the_same_voxels() -> None:
    """A Volume (numpy) and a tensor agree exactly; a Fortran-ordered tensor to rounding."""
    ct = read_nifti(EXAMPLE_CT)
    spacing = (1.3, 0.9, 2.5)
    from_numpy = resample_to_spacing(ct, spacing, order=1)
    array = np.asarray(ct.array, dtype=np.float32)
    grid = (ct.affine, from_numpy.affine, from_numpy.shape)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    from_torch = resample_tensor(tensor, *grid, order=1, padding="border")
    assert np.array_equal(from_torch.numpy(), from_numpy.array)
    fortran = torch.from_numpy(np.asfortranarray(array))  # nibabel's order, read as it lies
    assert not fortran.is_contiguous()
    from_fortran = resample_tensor(fortran, *grid, order=1, padding="border")
    assert from_fortran.is_contiguous()
    assert np.allclose(from_fortran.numpy(), from_numpy.array, rtol=0.0, atol=1e-3)


def test_prepare_normalises_each_block_before_interpolating() -> None:
    """Clipping inside the resampler equals normalising the whole image first."""
    ct = read_nifti(EXAMPLE_CT)
    raw = torch.from_numpy(np.asarray(ct.array))
    affine, shape = grid_for_spacing(ct.affine, ct.shape, CT_WINDOW.target_spacing)
    window = intensity_map(raw, CT_WINDOW)
    fused = resample_tensor(
        raw, ct.affine, affine, shape, order=1, padding="border", prepare=window.apply
    )
    normalised = torch.from_numpy(normalize_intensity(np.asarray(ct.array), CT_WINDOW))
    expected = resample_tensor(normalised, ct.affine, affine, shape, order=1, padding="border")
    assert torch.allclose(fused, expected, atol=1e-5)
    with pytest.raises(ValueError, match="order=1"):
        resample_tensor(raw, ct.affine, affine, shape, order=0, prepare=window.apply)


@pytest.mark.parametrize("order", ["fortran", "c"])
def test_finish_maps_each_block_as_after_the_whole(order: str) -> None:
    """``finish`` in the blocks' threads gives the bits of applying it to the whole result."""
    ct = read_nifti(EXAMPLE_CT)
    array = np.asarray(ct.array)
    laid = np.asfortranarray(array) if order == "fortran" else np.ascontiguousarray(array)
    raw = torch.from_numpy(laid)
    affine, shape = grid_for_spacing(ct.affine, ct.shape, (0.9, 1.1, 1.3))
    plan = ct_plan((0.9, 1.1, 1.3)).model_copy(update={"clip_low": -1e6, "clip_high": 1e6})
    scale = intensity_map(raw, plan)  # no clipping: linear, so it may follow interpolation
    assert not scale.clips(raw.dtype)
    grid = (ct.affine, affine, shape)
    cast = torch.Tensor.float
    whole = scale.apply(resample_tensor(raw, *grid, order=1, padding="border", prepare=cast))
    fused = resample_tensor(raw, *grid, order=1, padding="border", prepare=cast, finish=scale.apply)
    assert fused.shape == shape and fused.is_contiguous()
    assert torch.equal(fused, whole)
    with pytest.raises(ValueError, match="order=1"):
        resample_tensor(raw, *grid, order=0, finish=scale.apply)


def test_rotated_or_flipped_grids_have_no_axis_map() -> None:
    rotation = np.eye(4)
    rotation[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    assert axis_map(np.eye(4), rotation) is None
    assert axis_map(np.eye(4), np.diag([-1.0, 1.0, 1.0, 1.0])) is None  # flipped axis
    assert axis_map(np.diag([2.0, 2.0, 2.0, 1.0]), np.eye(4)) is not None
