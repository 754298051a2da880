"""Numeric precision in one place: AMP on CUDA, float32 (or opt-in bf16) on the CPU."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medverse.core.errors import ConfigError
from medverse.engine.backends import autocast_dtype, cpu_has_bf16

GRAD_CLIP_NORM = 12.0  # nnU-Net's gradient-norm clip


@dataclass
class Precision:
    """How the forward pass is cast and how the backward step is taken.

    Attributes:
        device: The compute device.
        dtype: Autocast dtype, or None for plain float32.
        scaler: Gradient scaler (fp16 only), else None.
    """

    device: torch.device
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @property
    def name(self) -> str:
        """``bf16``, ``fp16`` or ``fp32``, for logs."""
        if self.dtype is None:
            return "fp32"
        return "bf16" if self.dtype == torch.bfloat16 else "fp16"

    def autocast(self) -> AbstractContextManager[Any]:
        """Context for the forward pass (and loss)."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, network: nn.Module
    ) -> None:
        """Backpropagate ``loss``, clip the gradient norm and take one optimiser step."""
        if self.scaler is None:
            loss.backward()
            nn.utils.clip_grad_norm_(network.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(network.parameters(), GRAD_CLIP_NORM)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        """The scaler's state (None without a scaler)."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore the scaler's state saved by `state_dict`."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def make_precision(device: torch.device, amp: bool = True, cpu_bf16: bool = False) -> Precision:
    """Pick the training precision for ``device``: AMP on CUDA, bf16 where supported.

    The CPU trains in float32 unless ``cpu_bf16`` asks for bf16 autocast. On CPUs with native
    bf16 (AVX512-BF16, AMX) that is several times faster per step; it is opt-in because its
    kernels are not bit-reproducible across processes, so a resumed run continues the same
    run but not bit for bit.

    Args:
        device: The compute device.
        amp: Allow mixed precision on CUDA.
        cpu_bf16: bf16 autocast when ``device`` is the CPU.

    Raises:
        ConfigError: For ``cpu_bf16`` on a CPU without native bf16 (it would be slower).
    """
    if device.type != "cuda":
        if not cpu_bf16:
            return Precision(device, None, None)
        if not cpu_has_bf16():
            raise ConfigError("--cpu-bf16: this CPU has no native bf16 (AVX512-BF16 or AMX)")
        return Precision(device, torch.bfloat16, None)
    if not amp:
        return Precision(device, None, None)
    if torch.cuda.is_bf16_supported():
        return Precision(device, torch.bfloat16, None)
    return Precision(device, torch.float16, torch.amp.GradScaler("cuda"))


def guard_thin_convolutions(network: nn.Module) -> int:
    """Run convolutions whose input is thinner than their kernel in float32 (CPU bf16 fix).

    PyTorch 2.13's CPU bf16 conv3d backward returns non-finite weight gradients in about 5-20%
    of calls when the input's first spatial axis is 2 and the kernel 3 (e.g. inputs
    ``2 x 8 x 8`` or ``2 x 2 x 2``; measured on an AVX512-BF16 EPYC, 150 calls per shape;
    other depths were clean), so a bf16 run's weights went NaN within a few dozen steps
    when a patch's bottleneck got that thin. Such convolutions cost next to nothing, so under
    CPU bf16 autocast they run in float32; every other convolution keeps bf16.

    Args:
        network: The network to train (its convolutions are guarded in place).

    Returns:
        How many convolution modules were guarded.
    """
    guarded = 0
    for module in network.modules():
        if isinstance(module, nn.Conv3d | nn.ConvTranspose3d):
            module.forward = _float32_when_thin(module)  # type: ignore[method-assign]
            guarded += 1
    return guarded


def _float32_when_thin(conv: nn.Conv3d | nn.ConvTranspose3d) -> Any:
    forward, kernel = conv.forward, max(conv.kernel_size)

    def guarded_forward(x: torch.Tensor) -> torch.Tensor:
        thin = min(x.shape[2:]) < kernel
        if thin and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return forward(x.float())
        return forward(x)

    return guarded_forward


def inference_precision(device: torch.device) -> Precision:
    """The precision ``medverse segment`` uses by default on ``device``.

    Validation during training and ``medverse evaluate`` predict with it, so the Dice they
    report is the Dice a user gets from the shipped model (float32 on the CPU even where
    training runs in bf16).
    """
    return Precision(device, autocast_dtype(device), None)
