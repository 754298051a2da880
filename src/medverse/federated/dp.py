"""Central DP: clip each site's update, add Gaussian noise to the sum, account epsilon."""

from __future__ import annotations

import numpy as np
from dp_accounting import dp_event, rdp

from medverse.core.errors import ConfigError


def clip_to_norm(flat_update: np.ndarray, clip_norm: float) -> np.ndarray:
    """Scale ``flat_update`` down so its L2 norm is at most ``clip_norm`` (unchanged if inside)."""
    if clip_norm <= 0:
        raise ConfigError(f"DP clipping norm must be > 0, got {clip_norm}")
    norm = float(np.linalg.norm(flat_update))
    return flat_update * min(1.0, clip_norm / norm) if norm > 0 else flat_update.copy()


def noisy_mean(
    clipped_updates: list[np.ndarray], noise_multiplier: float, clip_norm: float, seed: int
) -> np.ndarray:
    """Mean of clipped updates, ``N(0, (noise_multiplier * clip_norm)^2)`` added to the sum.

    Args:
        clipped_updates: Flat site updates already clipped to ``clip_norm``.
        noise_multiplier: sigma; 0 gives the plain (clipped) mean.
        clip_norm: C, the sensitivity of the sum to one site.
        seed: Seed of the server's noise generator.
    """
    if noise_multiplier < 0:
        raise ConfigError(f"DP noise multiplier must be >= 0, got {noise_multiplier}")
    total = np.sum(clipped_updates, axis=0)
    rng = np.random.default_rng(seed)
    total = total + rng.normal(0.0, noise_multiplier * clip_norm, size=total.shape)
    return total / len(clipped_updates)


def epsilon_spent(
    noise_multiplier: float, rounds: int, delta: float, sampling_rate: float = 1.0
) -> float:
    """Site-level epsilon after ``rounds`` noisy rounds, from dp_accounting's RDP accountant.

    Args:
        noise_multiplier: sigma of the Gaussian mechanism (noise std / clip norm).
        rounds: Number of aggregation rounds composed.
        delta: Target delta.
        sampling_rate: Fraction of sites sampled per round (Poisson); 1.0 = every site.

    Returns:
        The epsilon for ``delta``; ``inf`` when no noise is added.
    """
    if not 0 < delta < 1:
        raise ConfigError(f"DP delta must be in (0, 1), got {delta}")
    if noise_multiplier == 0:
        return float("inf")
    event: dp_event.DpEvent = dp_event.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1.0:
        event = dp_event.PoissonSampledDpEvent(sampling_rate, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(event, rounds)
    return float(accountant.get_epsilon(delta))
