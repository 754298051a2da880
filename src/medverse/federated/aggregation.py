"""Aggregation maths for federated rounds: weighted FedAvg and the FedProx proximal term."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medverse.core.errors import ConfigError

Arrays = list[np.ndarray]


def fedavg(site_arrays: Sequence[Sequence[np.ndarray]], weights: Sequence[float]) -> Arrays:
    """Average each parameter array over sites, weighted (usually by examples per site).

    Args:
        site_arrays: One list of parameter arrays per site, all with the same shapes.
        weights: One non-negative weight per site; at least one must be positive.

    Returns:
        The weighted mean of every parameter array, as float64 copies.

    Raises:
        ConfigError: No sites, a weight count or array shape that does not match, or
            weights that do not sum to a positive number.
    """
    if not site_arrays:
        raise ConfigError("FedAvg needs at least one site's arrays")
    if len(weights) != len(site_arrays):
        raise ConfigError(f"FedAvg got {len(site_arrays)} sites but {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"FedAvg weights must be >= 0 with a positive sum, got {list(w)}")
    shapes = [a.shape for a in site_arrays[0]]
    for i, arrays in enumerate(site_arrays):
        if [a.shape for a in arrays] != shapes:
            raise ConfigError(
                f"site {i} sent shapes {[a.shape for a in arrays]}, expected {shapes}"
            )
    w = w / w.sum()
    return [
        sum(wi * np.asarray(arrays[j], dtype=np.float64) for wi, arrays in zip(w, site_arrays))
        for j in range(len(shapes))
    ]


def proximal_term(
    params: Sequence[torch.Tensor], global_params: Sequence[torch.Tensor], mu: float
) -> torch.Tensor:
    """FedProx's ``mu / 2 * ||w - w_global||^2`` added to a site's loss (differentiable in w).

    Args:
        params: The site model's current parameters.
        global_params: The global parameters received this round (treated as constants).
        mu: The proximal weight; 0 gives plain FedAvg local training.
    """
    if mu < 0:
        raise ConfigError(f"FedProx mu must be >= 0, got {mu}")
    total = torch.zeros((), dtype=torch.float32)
    for p, g in zip(params, global_params, strict=True):
        total = total + ((p - g.detach()) ** 2).sum()
    return 0.5 * mu * total
