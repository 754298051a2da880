"""Test helpers: real cases, plans, and small real networks fitted to one case as checkpoints."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from medverse.core.volume import LabelMap, Volume
from medverse.models.checkpoint import save_checkpoint
from medverse.models.factory import build_network
from medverse.preprocessing.normalize import normalize_intensity
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import resample_to_spacing


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def fit_checkpoint(
    image: Volume,
    labels: LabelMap,
    plan: Plan,
    path: Path,
    *,
    steps: int,
    seed: int = 0,
    lr: float = 3e-3,
) -> Path:
    """Train ``plan.preset`` on the whole of one case (at the plan's spacing) and save it.

    Training sees exactly what inference will see: the plan's normalisation, then linear
    resampling to ``plan.target_spacing`` (labels nearest), zero-padded up to the patch size.
    """
    torch.manual_seed(seed)
    spacing = plan.target_spacing
    grid = resample_to_spacing(
        image.with_array(normalize_intensity(np.asarray(image.array), plan)), spacing, order=1
    )
    target = resample_to_spacing(labels, spacing, order=0)
    x = _padded(torch.from_numpy(np.asarray(grid.array, dtype=np.float32)), plan.patch_size)
    y = _padded(torch.from_numpy(target.array.astype(np.int64)), plan.patch_size)
    network = build_network(plan.preset, 1, plan.num_classes)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    network.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss(network(x[None, None]), y[None, None]).backward()
        optimizer.step()
    return save_checkpoint(path, network, plan, preset=plan.preset, labels=plan.labels)


def untrained_checkpoint(plan: Plan, path: Path, *, seed: int = 0) -> Path:
    """Save a freshly initialised ``plan.preset`` network as a checkpoint."""
    torch.manual_seed(seed)
    network = build_network(plan.preset, 1, plan.num_classes)
    return save_checkpoint(path, network, plan, preset=plan.preset, labels=plan.labels)


def _padded(tensor: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pad a 3D tensor on both sides up to a multiple of ``size``, like the sliding window."""
    pads: list[int] = []
    for n, p in zip(reversed(tensor.shape), reversed(size)):
        extra = -n % p
        pads += [extra // 2, extra - extra // 2]
    return torch.nn.functional.pad(tensor, pads)


HIPPO_LABELS = {1: "Anterior", 2: "Posterior"}
CT_TEST_LABELS = {1: "spleen", 5: "liver"}


def hippo_plan(spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Plan:
    """An MR plan for the hippocampus crops with the small UNet."""
    return Plan(
        modality="MR",
        target_spacing=spacing,
        patch_size=(40, 56, 40),
        normalization="zscore",
        labels=HIPPO_LABELS,
        preset="unet_small",
    )


def ct_plan(spacing: tuple[float, float, float] = (8.0, 8.0, 8.0)) -> Plan:
    """A coarse CT plan (soft-tissue window) for the 20-slice CT series, spleen and liver."""
    return Plan(
        modality="CT",
        target_spacing=spacing,
        patch_size=(64, 64, 8),
        normalization="ct_window",
        clip_low=-160.0,
        clip_high=240.0,
        mean=40.0,
        std=100.0,
        labels=CT_TEST_LABELS,
        preset="unet_small",
    )


def read_hippo(case: str = "hippocampus_001") -> tuple[Volume, LabelMap]:
    """One real hippocampus MR crop and its reference labels."""
    from medverse.io.nifti import read_nifti, read_nifti_labels
    from tests.conftest import HIPPOCAMPUS

    image = read_nifti(HIPPOCAMPUS / "imagesTr" / f"{case}.nii.gz")
    labels = read_nifti_labels(HIPPOCAMPUS / "labelsTr" / f"{case}.nii.gz", HIPPO_LABELS)
    return image, labels


def read_ct() -> tuple[Volume, LabelMap]:
    """The real CT series and its reference spleen and liver, on the series' grid."""
    from medverse.io.dicom import read_series
    from medverse.io.nifti import read_nifti_labels
    from medverse.preprocessing.resample import resample_to_grid
    from tests.conftest import CT_LABELS, CT_SERIES

    ct = read_series(CT_SERIES)
    reference = resample_to_grid(read_nifti_labels(CT_LABELS), ct.affine, ct.shape, order=0)
    kept = np.where(np.isin(reference.array, list(CT_TEST_LABELS)), reference.array, 0)
    return ct, LabelMap(kept.astype(np.uint8), ct.affine, labels=CT_TEST_LABELS)


@functools.cache
def _models_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="medverse-test-models-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def fitted_hippo_checkpoint() -> Path:
    """unet_small fitted for 40 steps to hippocampus_001 (Dice about 0.9 on that case).

    Fitted once per test process, whichever test module asks first.
    """
    image, labels = read_hippo()
    return fit_checkpoint(image, labels, hippo_plan(), _models_dir() / "hippo.pt", steps=40)


@functools.cache
def fitted_ct_checkpoint() -> Path:
    """unet_small fitted for 25 steps to the CT's spleen and liver at 8 mm (liver Dice ~0.9)."""
    ct, labels = read_ct()
    return fit_checkpoint(ct, labels, ct_plan(), _models_dir() / "ct.pt", steps=25)


@pytest.fixture
def hippo_checkpoint() -> Path:
    """The fitted hippocampus checkpoint (see `fitted_hippo_checkpoint`)."""
    return fitted_hippo_checkpoint()
