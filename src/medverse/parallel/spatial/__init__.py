"""Spatial parallelism: one 3D volume split across processes, halos exchanged per layer."""

from __future__ import annotations

from medverse.parallel.spatial.errors import (
    RankFailedError,
    SlabTooThinError,
    UnsupportedLayerError,
)
from medverse.parallel.spatial.grid import ProcessGrid, make_grid
from medverse.parallel.spatial.wrap import SpatialParallel, spatial_parallel

__all__ = [
    "ProcessGrid",
    "RankFailedError",
    "SlabTooThinError",
    "SpatialParallel",
    "UnsupportedLayerError",
    "make_grid",
    "spatial_parallel",
]
