"""Opt-in bf16 training on the CPU: used where the CPU has native bf16, refused elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medverse.core.errors import ConfigError
from medverse.engine.backends import cpu_has_bf16
from medverse.models.checkpoint import load_checkpoint
from medverse.training.api import train
from medverse.training.config import TrainConfig
from medverse.training.history import read_metrics
from medverse.training.precision import guard_thin_convolutions, make_precision
from tests.training.conftest import tiny_options

CPU = torch.device("cpu")


def test_the_cpu_trains_in_float32_unless_asked() -> None:
    assert make_precision(CPU).dtype is None


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_a_bf16_run_trains_and_ships_float32_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    assert make_precision(CPU, cpu_bf16=True).dtype == torch.bfloat16
    result = train(tiny_dataset, tmp_path / "run", TrainConfig(cpu_bf16=True, **tiny_options()))
    rows = read_metrics(result.metrics_csv)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["val_dice"]) <= 1.0 for r in rows)
    assert all(torch.isfinite(torch.tensor(float(r["train_loss"]))) for r in rows)
    network = load_checkpoint(result.last_checkpoint).network
    assert {p.dtype for p in network.parameters()} == {torch.float32}
    assert all(torch.isfinite(p).all() for p in network.parameters())


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
def test_thin_convolutions_give_finite_weight_gradients_under_bf16() -> None:
    # torch's CPU bf16 conv3d backward returns NaN/inf weight gradients in ~20% of calls on a
    # 2 x 8 x 8 input (depth 2 < kernel 3): 60 calls all finite only with the guard.
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(64, 64, 3, padding=1)
    assert guard_thin_convolutions(torch.nn.Sequential(conv)) == 1
    for _ in range(60):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(torch.randn(2, 64, 2, 8, 8, requires_grad=True))
        assert out.dtype == torch.float32  # the thin input ran in float32
        out.square().mean().backward()
        assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
        conv.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(torch.randn(1, 64, 4, 4, 4)).dtype == torch.bfloat16  # others keep bf16


@pytest.mark.skipif(cpu_has_bf16(), reason="this CPU has native bf16")
def test_bf16_is_refused_on_a_cpu_without_it(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no native bf16"):
        train(tiny_dataset, tmp_path / "run", TrainConfig(cpu_bf16=True, **tiny_options()))
    assert not (tmp_path / "run").exists()
