"""MONAI model-zoo bundles as models the Predictor runs: network, weights, plan, orientation.

A bundle as a user downloaded it (``configs/inference.json`` or ``.yaml``,
``configs/metadata.json``, ``models/model.pt`` or ``models/model.ts``) becomes a `BundleModel`.
Only ``network_def`` (and what it refers to) is evaluated, after a check that refuses anything
that would download. Bundle configs can hold Python expressions, so treat a bundle like code:
load the ones you trust.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

from medverse.core.errors import ModelError
from medverse.core.volume import Volume
from medverse.models.bundles.config import (
    BundleFiles,
    check_offline,
    error_summary,
    find_bundle_files,
    open_config,
    read_metadata,
)
from medverse.models.bundles.described import bundle_key, read_description, write_description
from medverse.models.bundles.plan import bundle_plan
from medverse.models.checkpoint import LoadedModel
from medverse.models.orientation import to_orientation  # noqa: F401 (its former home)
from medverse.preprocessing.plan import Plan

if TYPE_CHECKING:  # MONAI is imported only when a config is parsed
    from monai.bundle import ConfigParser

V = TypeVar("V", bound=Volume)


class BundleModel(LoadedModel):
    """A MONAI bundle loaded as a `LoadedModel`.

    Its ``orientation`` is the axis codes the bundle's ``Orientationd`` puts images in before
    anything else (e.g. ``"RAS"``); None when it has no such step.
    """

    @property
    def title(self) -> str:
        """The algorithm name outputs record: ``MONAI bundle <name>``."""
        return f"MONAI bundle {self.meta['bundle']}"


def load_bundle(
    bundle_dir: str | Path, map_location: str | torch.device = "cpu", *, lazy: bool = False
) -> BundleModel:
    """Load a MONAI bundle offline as a model the Predictor runs.

    The plan comes from the configs: ``Spacingd`` pixdim -> target spacing,
    ``ScaleIntensityRanged`` -> a ``ct_window`` normalisation with the same output (or
    ``NormalizeIntensityd`` -> ``zscore``), the ``SlidingWindowInferer`` roi_size -> patch size,
    labels from metadata.json's ``network_data_format.outputs.pred.channel_def`` and the modality
    from its input. Weights load with ``torch.load(weights_only=True)``.

    Args:
        bundle_dir: The bundle folder.
        map_location: Device for the network.
        lazy: Build the network only when it is first used. The first lazy load of a bundle
            parses it in full and caches what it found (`medverse.models.bundles.described`);
            later ones of the same bytes read that instead of parsing the config with MONAI.

    Raises:
        ModelError: Naming the bundle file, for a missing config, metadata or weights file, a
            config that would download something or names an unknown component, preprocessing
            medverse cannot reproduce, or weights that do not fit the network.
    """
    files = find_bundle_files(bundle_dir)
    if not lazy:
        return _load_parsed(files, map_location)
    key = bundle_key(files)
    found = read_description(key)
    if found is None:
        model = _load_parsed(files, map_location)
        write_description(
            key,
            plan=model.plan,
            labels=model.labels,
            preset=model.preset,
            meta=model.meta,
            orientation=model.orientation,
            digest=model.weights_digest(),
        )
        return model

    def build() -> torch.nn.Module:
        return _load_parsed(files, map_location).network

    meta = {**found["meta"], "path": str(files.root)}
    return BundleModel(
        build,
        found["plan"],
        found["labels"],
        found["preset"],
        meta,
        found["orientation"],
        digest=found["digest"],
    )


def _load_parsed(files: BundleFiles, map_location: str | torch.device) -> BundleModel:
    """The bundle with its config parsed (MONAI) and its network built."""
    metadata = read_metadata(files.metadata)
    parser = open_config(files)
    name = str(metadata.get("name") or files.root.resolve().name)
    plan, orientation = bundle_plan(parser, metadata, files, preset=f"bundle:{name}")
    network = load_network(parser, files)
    check_channels(network, plan, files)
    network.to(map_location).eval()
    meta = {
        "in_channels": 1,
        "out_channels": plan.num_classes,
        "path": str(files.root),
        "bundle": name,
        "version": str(metadata.get("version", "")),
        "config": files.config.name,
        "weights": files.weights.name,
    }
    return BundleModel(network, plan, dict(plan.labels), plan.preset, meta, orientation)


def load_network(parser: ConfigParser, files: BundleFiles) -> torch.nn.Module:
    """The network with the bundle's weights: ``network_def`` + model.pt, or model.ts alone.

    Raises:
        ModelError: Naming the config or the weights file.
    """
    if files.weights.suffix == ".ts":
        return _load_torchscript(files.weights)
    check_offline(parser, "network_def", files.config)
    if "network_def" not in parser:
        raise ModelError("config has no 'network_def'", files.config)
    try:
        network = parser.get_parsed_content("network_def")
    except ModuleNotFoundError as e:
        raise ModelError(
            f"network_def names an unknown component ({error_summary(e)}); medverse builds "
            "networks that MONAI or torch provide and does not import bundle scripts",
            files.config,
        ) from None
    except Exception as e:  # MONAI wraps constructor errors in RuntimeError and friends
        raise ModelError(f"cannot build network_def ({error_summary(e)})", files.config) from None
    if not isinstance(network, torch.nn.Module):
        raise ModelError(f"network_def is a {type(network).__name__}, not a network", files.config)
    network.load_state_dict(_state_dict(files.weights, network), strict=True)
    return network


def check_channels(network: torch.nn.Module, plan: Plan, files: BundleFiles) -> None:
    """Refuse a network whose input is not one channel or whose outputs the labels do not fit.

    Networks that do not record their channel counts (TorchScript) are checked when they
    first predict.
    """
    given, made = getattr(network, "in_channels", 1), getattr(network, "out_channels", None)
    if isinstance(given, int) and given != 1:
        raise ModelError(
            f"network takes {given} input channels; medverse feeds one image", files.config
        )
    if isinstance(made, int) and made != plan.num_classes:
        raise ModelError(
            f"network predicts {made} channels but channel_def describes {plan.num_classes} "
            f"(background and labels up to {plan.num_classes - 1})",
            files.metadata,
        )


def _state_dict(path: Path, network: torch.nn.Module) -> dict[str, torch.Tensor]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(
            "weights hold objects a safe load refuses (not a state dict)", path
        ) from None
    except Exception as e:  # truncated or foreign bytes
        raise ModelError(f"weights are not readable ({error_summary(e)})", path) from None
    if isinstance(payload, Mapping):
        for key in ("model", "state_dict", "network"):
            if isinstance(payload.get(key), Mapping):
                payload = payload[key]
                break
    if not isinstance(payload, Mapping):
        raise ModelError(f"weights hold a {type(payload).__name__}, not a state dict", path)
    state = {str(k).removeprefix("module."): v for k, v in payload.items()}
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{label} {names[:3]}"
            for label, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if names
        ]
        raise ModelError(f"weights do not match network_def ({'; '.join(problems)})", path)
    return state


def _load_torchscript(path: Path) -> torch.nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # TorchScript raises RuntimeError and others on foreign bytes
        raise ModelError(f"not a loadable TorchScript model ({error_summary(e)})", path) from None
