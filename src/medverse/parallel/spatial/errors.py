"""Errors of spatial parallelism: a slab too thin for its halo, a rank that failed."""

from __future__ import annotations

from medverse.core.errors import ConfigError, InputError, MedverseError


class SlabTooThinError(InputError):
    """A rank's slab of the volume is thinner than the halo a neighbour needs from it."""


class UnsupportedLayerError(ConfigError):
    """The network holds a layer that cannot run on a split volume."""


class RankFailedError(MedverseError):
    """A rank of a spatially parallel job failed, died or timed out."""
