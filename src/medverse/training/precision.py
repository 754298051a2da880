"""Numeric precision in one place: AMP on CUDA (bf16, else fp16 with a grad scaler), fp32 on CPU."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medverse.models.backends import autocast_dtype

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


def make_precision(device: torch.device, amp: bool = True) -> Precision:
    """Pick the training precision for ``device``: AMP only on CUDA, bf16 where supported.

    The CPU trains in float32: its bf16 kernels are not bit-reproducible across processes,
    which exact resume needs, and gain little once data loading is counted.

    Args:
        device: The compute device.
        amp: Allow mixed precision (ignored on the CPU).
    """
    if device.type != "cuda" or not amp:
        return Precision(device, None, None)
    if torch.cuda.is_bf16_supported():
        return Precision(device, torch.bfloat16, None)
    return Precision(device, torch.float16, torch.amp.GradScaler("cuda"))


def inference_precision(device: torch.device) -> Precision:
    """The precision ``medverse segment`` uses by default on ``device``.

    Validation during training and ``medverse evaluate`` predict with it, so the Dice they
    report is the Dice a user gets from the shipped model (float32 on the CPU even where
    training runs in bf16).
    """
    return Precision(device, autocast_dtype(device), None)
