"""Simulated acquisition changes ("scanners") applied to a site's MR images, as pure array ops."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.ndimage import zoom

from medverse.core.errors import ConfigError


class Acquisition(StrEnum):
    """The kind of acquisition change a simulated scanner makes."""

    GAMMA = "gamma"
    BIAS_FIELD = "bias-field"
    NOISE = "noise"
    THICK_SLICES = "thick-slices"


@dataclass(frozen=True)
class Scanner:
    """One site's fixed acquisition change.

    Attributes:
        kind: What changes.
        strength: Gamma exponent; peak-to-trough log-gain of the bias field; noise std as a
            fraction of the image's 99th percentile; or slice-thickness factor (integer >= 2).
    """

    kind: Acquisition
    strength: float


# One change per site (site 0..3), each strong enough to move the intensity histogram.
SCANNERS = (
    Scanner(Acquisition.GAMMA, 0.5),
    Scanner(Acquisition.BIAS_FIELD, 0.8),
    Scanner(Acquisition.NOISE, 0.12),
    Scanner(Acquisition.THICK_SLICES, 3.0),
)


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``(x / x99) ** gamma * x99`` on the non-negative intensities (contrast curve change)."""
    if gamma <= 0:
        raise ConfigError(f"gamma must be > 0, got {gamma}")
    top = float(np.percentile(image, 99)) or 1.0
    return (np.clip(image / top, 0.0, None) ** gamma * top).astype(np.float32)


def apply_bias_field(image: np.ndarray, strength: float) -> np.ndarray:
    """Multiply by a smooth field ``exp(strength * f)`` (the shading of a receive coil).

    ``f`` is a fixed low-order polynomial over the volume, scaled to [-0.5, 0.5].
    """
    axes = [np.linspace(-1.0, 1.0, n) for n in image.shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    field = 0.5 * x + 0.3 * y * z + 0.2 * z**2 - 0.1
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6) - 0.5
    return (image * np.exp(strength * field)).astype(np.float32)


def apply_noise(image: np.ndarray, level: float, seed: int) -> np.ndarray:
    """Add Gaussian noise of std ``level * 99th percentile`` (seeded per case)."""
    if level < 0:
        raise ConfigError(f"noise level must be >= 0, got {level}")
    sigma = level * float(np.percentile(image, 99))
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=image.shape)
    return (image + noise).astype(np.float32)


def apply_thick_slices(image: np.ndarray, factor: int) -> np.ndarray:
    """Average every ``factor`` slices along the last axis, then interpolate back to the grid."""
    if factor < 2:
        raise ConfigError(f"slice-thickness factor must be >= 2, got {factor}")
    n = image.shape[-1]
    pad = (-n) % factor
    padded = np.pad(image, ((0, 0), (0, 0), (0, pad)), mode="edge")
    thick = padded.reshape(*image.shape[:2], -1, factor).mean(axis=-1)
    # Linear, end slabs on the end slices (scipy's zoom grid): a sub-slice shift, as slab
    # placement differs between scanners too.
    back = zoom(thick, (1.0, 1.0, padded.shape[-1] / thick.shape[-1]), order=1, mode="nearest")
    return back[..., :n].astype(np.float32)


def acquire(image: np.ndarray, scanner: Scanner, seed: int) -> np.ndarray:
    """The image as ``scanner`` would have acquired it (same grid, float32).

    Args:
        image: A 3D MR image ``[i, j, k]``.
        scanner: The site's acquisition change.
        seed: Per-case seed (used by the noise only).
    """
    image = np.asarray(image, dtype=np.float32)
    if scanner.kind == Acquisition.GAMMA:
        return apply_gamma(image, scanner.strength)
    if scanner.kind == Acquisition.BIAS_FIELD:
        return apply_bias_field(image, scanner.strength)
    if scanner.kind == Acquisition.NOISE:
        return apply_noise(image, scanner.strength, seed)
    return apply_thick_slices(image, int(scanner.strength))
