"""`load_model`: a medverse checkpoint file or a MONAI bundle folder, as one loaded model."""

from __future__ import annotations

from pathlib import Path

import torch

from medverse.models.bundles.bundle import load_bundle
from medverse.models.checkpoint import LoadedModel, load_checkpoint


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu", *, lazy: bool = False
) -> LoadedModel:
    """Load the model at ``path``: a folder is a MONAI bundle, a file a medverse checkpoint.

    A missing path without a file suffix is taken for a bundle folder, so the error says
    which was looked for. A bundle comes back as a
    `medverse.models.bundles.bundle.BundleModel`, which puts images in the orientation its
    network expects and the labels back (the `Predictor` does both).

    Args:
        path: A checkpoint written by ``save_checkpoint`` (``.pt``), or a bundle folder
            (``configs/inference.json``, ``configs/metadata.json``, ``models/model.pt``).
        map_location: Device for the network.
        lazy: Build the network only when it is first used (`load_checkpoint`,
            `load_bundle`): a run whose network comes from the export cache then never
            imports MONAI. Any error building it is raised then, naming the file.

    Raises:
        ModelError: Naming the path: no checkpoint file or bundle folder there, or one that
            is not usable.
    """
    path = Path(path)
    if path.is_dir() or (not path.exists() and not path.suffix):  # a folder, or meant as one
        return load_bundle(path, map_location=map_location, lazy=lazy)
    return load_checkpoint(path, map_location=map_location, lazy=lazy)
