"""Training losses."""

from __future__ import annotations

from monai.losses import DiceCELoss


def make_loss() -> DiceCELoss:
    """Return Dice + cross-entropy on softmax outputs against integer label maps.

    The loss takes logits ``[B, C, ...]`` and labels ``[B, 1, ...]`` (one-hot encoded inside).
    """
    return DiceCELoss(to_onehot_y=True, softmax=True)
