"""Spatial parallelism on 2 and 4 gloo ranks equals one process (outputs and gradients)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from medverse.io.nifti import read_nifti
from medverse.models.checkpoint import load_checkpoint
from medverse.models.factory import build_network
from medverse.parallel.spatial import RankFailedError, SlabTooThinError, spatial_parallel
from medverse.parallel.spatial.hybrid import hybrid_groups, hybrid_parallel
from medverse.parallel.spatial.launch import run_ranks
from medverse.parallel.spatial.runner import SpatialRunner
from tests.conftest import HIPPOCAMPUS, REPO

pytestmark = pytest.mark.dist

TOL = 1e-5  # float32, absolute, on outputs and on every parameter gradient
SHIPPED_MODEL = REPO / "models" / "hippocampus_dynunet.pt"
# name, network ("layers" or a registry preset), split axis or axes, grid, crop shape
Case = tuple[str, str, Any, Sequence[int] | None, tuple[int, int, int]]


def _hippocampus(shape: tuple[int, int, int]) -> torch.Tensor:
    """A z-scored crop of a real MSD hippocampus MRI as a ``1, 1, D, H, W`` tensor."""
    array = read_nifti(HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz").array
    array = np.asarray(array, dtype=np.float32)
    start = [(n - s) // 2 for n, s in zip(array.shape, shape, strict=True)]
    crop = array[tuple(slice(a, a + s) for a, s in zip(start, shape, strict=True))]
    crop = (crop - crop.mean()) / crop.std()
    return torch.from_numpy(np.ascontiguousarray(crop))[None, None]


def _layers() -> nn.Module:
    """Bare layers at awkward geometry: stride 2, dilation, odd transposed up-sampling."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, stride=2, padding=1),
        nn.GroupNorm(2, 4),
        nn.Conv3d(4, 4, 5, padding=4, dilation=2),
        nn.BatchNorm3d(4),
        nn.ConvTranspose3d(4, 3, 3, stride=2, padding=1, output_padding=1),
        nn.InstanceNorm3d(3, affine=True),
        nn.LeakyReLU(),
        nn.ConvTranspose3d(3, 2, 2, stride=2),
        nn.Conv3d(2, 2, 1),
    )


def _network(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return _layers() if kind == "layers" else build_network(kind, 1, 3)


class Reference(NamedTuple):
    """The one-process result a spatially parallel run must reproduce."""

    output: torch.Tensor
    grads: list[torch.Tensor]
    buffers: list[torch.Tensor]


def _loss(y: torch.Tensor) -> torch.Tensor:
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    return (y * weights).mean()


def _reference(kind: str, x: torch.Tensor) -> Reference:
    net = _network(kind)
    y = net(x)
    _loss(y).backward()
    grads = [p.grad.detach() for p in net.parameters() if p.grad is not None]
    return Reference(y.detach(), grads, [b.detach() for b in net.buffers()])


def _compare(case: Case, x: torch.Tensor, ref: Reference) -> dict[str, float]:
    """This rank's spatially parallel run against the one-process reference."""
    _, kind, axis, grid, _ = case
    net = _network(kind)
    y = spatial_parallel(net, None, axis, grid_shape=grid)(x)
    _loss(y).backward()
    grads = [p.grad for p in net.parameters()]
    return {
        "output": (y - ref.output).abs().max().item(),
        "grad": max((a - b).abs().max().item() for a, b in zip(grads, ref.grads, strict=True)),
        "grad_scale": max(g.abs().max().item() for g in ref.grads),
        "params": float(len(ref.grads)),
        "buffers": max(
            [(a - b).abs().max().item() for a, b in zip(net.buffers(), ref.buffers, strict=True)],
            default=0.0,
        ),
    }


def _cases_job(cases: list[Case], inputs: list[tuple[torch.Tensor, Reference]]) -> dict[str, Any]:
    return {c[0]: _compare(c, x, ref) for c, (x, ref) in zip(cases, inputs, strict=True)}


def _run(cases: list[Case], nprocs: int) -> list[dict[str, Any]]:
    inputs = []
    for _, kind, _, _, shape in cases:
        x = _hippocampus(shape)
        inputs.append((x, _reference(kind, x)))
    results: list[dict[str, Any]] = run_ranks(_cases_job, nprocs, (cases, inputs), timeout_s=240)
    for rank, per_case in enumerate(results):
        for name, r in per_case.items():
            where = f"rank {rank}, case {name}"
            assert r["output"] <= TOL, f"{where}: output differs by {r['output']:.2e}"
            assert r["grad"] <= TOL, f"{where}: a gradient differs by {r['grad']:.2e}"
            assert r["buffers"] <= TOL, f"{where}: running statistics differ"
    print(f"{nprocs} ranks:", results[0])
    return results


def test_dynunet_on_two_ranks_equals_one_process() -> None:
    # 24 along H splits 12/12 -> 6 -> 3 (1 + 2: odd, uneven); stride-2 convs straddle the
    # border at every level. The bare layers split 35 as 17/18: a stride-2 conv at an odd
    # border, dilation 2, a 3x3x3 stride-2 transposed conv with output padding.
    cases = [
        ("dynunet H", "dynunet", 1, None, (8, 24, 16)),
        ("layers D", "layers", 0, None, (35, 12, 10)),
    ]
    _run(cases, 2)


def test_dynunet_on_four_ranks_and_a_2x2_grid_equals_one_process() -> None:
    # 40 along H over 4 ranks: 10 each, then 5, 2/3/2/3, 1/1/1/2 at the bottom.
    cases = [
        ("dynunet H x4", "dynunet", 1, None, (8, 40, 8)),
        ("unet D,H 2x2", "unet_small", (0, 1), (2, 2), (24, 24, 16)),
        ("layers D,W 2x2", "layers", (0, 2), (2, 2), (19, 12, 23)),
    ]
    _run(cases, 4)


def _thin_job() -> None:
    # 8 voxels along D: 4 per rank, then 2, then 1 voxel for 2 ranks at the bottom.
    spatial_parallel(_network("dynunet"), None, 0)(torch.zeros(1, 1, 8, 16, 16))


def test_a_volume_too_thin_for_the_ranks_is_a_clear_error_on_every_rank() -> None:
    with pytest.raises(RankFailedError) as info:
        run_ranks(_thin_job, 2, timeout_s=60)
    message = str(info.value)
    assert message.count(SlabTooThinError.__name__) == 2, message
    assert "axis D" in message and "use fewer ranks along this axis" in message


def _dying_job() -> None:
    net = spatial_parallel(_network("layers"), None, 0)
    if torch.distributed.get_rank() == 1:
        os._exit(3)  # a rank lost mid-job (out of memory, node failure)
    net(torch.zeros(1, 1, 16, 8, 8))


def test_a_rank_that_dies_is_reported_and_nothing_hangs() -> None:
    start = time.monotonic()
    with pytest.raises(RankFailedError) as info:
        run_ranks(_dying_job, 2, timeout_s=60)
    message = str(info.value)
    assert "rank 1: died with exit code 3" in message, message
    assert "rank 0: RankFailedError" in message and "peer rank died" in message, message
    assert time.monotonic() - start < 60


def _hybrid_job(volumes: list[torch.Tensor], ref: Reference) -> dict[str, float]:
    groups = hybrid_groups(spatial_ranks=2)
    net = _network("dynunet")
    model = hybrid_parallel(net, groups, axis=1)
    _loss(model(volumes[groups.replica])).backward()
    grads = [p.grad for p in net.parameters()]
    return {
        "grad": max((a - b).abs().max().item() for a, b in zip(grads, ref.grads, strict=True)),
    }


def test_ddp_over_two_spatial_groups_equals_one_process_averaging_both_volumes() -> None:
    # 4 ranks = 2 replicas x 2 spatial ranks; each replica a different hippocampus crop.
    volumes = [_hippocampus((8, 24, 16)), _hippocampus((8, 24, 16)).flip(2).contiguous()]
    net = _network("dynunet")
    ((_loss(net(volumes[0])) + _loss(net(volumes[1]))) / 2).backward()
    ref = Reference(torch.empty(0), [p.grad.detach() for p in net.parameters()], [])
    results = run_ranks(_hybrid_job, 4, (volumes, ref), timeout_s=240)
    print("hybrid:", results)
    assert all(r["grad"] <= TOL for r in results), results


def test_spatial_runner_labels_equal_one_process_with_the_shipped_model() -> None:
    # The shipped hippocampus DynUNet on a whole (cropped to a multiple of 8) MRI.
    net = load_checkpoint(SHIPPED_MODEL).network.eval()
    x = _hippocampus((32, 48, 32))
    with torch.inference_mode():
        expected = net(x)
    got = SpatialRunner(net, 2, axis=1, timeout_s=180)(x)
    assert got.shape == expected.shape
    # Trained logits reach |20|, where float32 spacing is ~2e-6: allow 1e-5 relative to them.
    assert (got - expected).abs().max().item() <= TOL * expected.abs().max().item()
    labels = expected.argmax(1)
    assert labels.unique().numel() > 1  # the model finds hippocampus here
    assert torch.equal(got.argmax(1), labels)
