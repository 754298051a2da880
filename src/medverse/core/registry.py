"""The pure-data registry: label maps (names and colours), model presets and tasks; no torch."""

from __future__ import annotations

import colorsys
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from medverse.core.errors import ConfigError

RGB = tuple[int, int, int]


class Modality(StrEnum):
    """Imaging modality, which decides intensity normalisation."""

    CT = "CT"
    MR = "MR"


@dataclass(frozen=True)
class LabelInfo:
    """One structure in a label map.

    Attributes:
        value: The integer in the label array.
        name: Machine-friendly name, e.g. ``"liver"``.
        color: Display colour as 0-255 RGB.
    """

    value: int
    name: str
    color: RGB


@dataclass(frozen=True)
class ModelPreset:
    """A named network configuration the model factory can build.

    Attributes:
        name: Preset name used on the command line and in checkpoints.
        network: MONAI network class name (``UNet``, ``SegResNet`` or ``DynUNet``).
        kwargs: Keyword arguments for that class, less in/out channels.
    """

    name: str
    network: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A segmentation task: what it reads, what it labels, and the default network.

    Attributes:
        name: Task name.
        modality: Expected imaging modality.
        label_map: Name of the label map in the registry.
        preset: Name of the default model preset.
    """

    name: str
    modality: Modality
    label_map: str
    preset: str


# Colours for common structures (Slicer / TotalSegmentator-like palette); others are generated.
_NAMED_COLORS: dict[str, RGB] = {
    "liver": (221, 130, 101),
    "spleen": (157, 108, 162),
    "kidney_right": (185, 102, 83),
    "kidney_left": (185, 102, 83),
    "gallbladder": (139, 150, 98),
    "stomach": (216, 132, 105),
    "pancreas": (249, 180, 111),
    "aorta": (224, 97, 76),
    "inferior_vena_cava": (0, 151, 206),
    "portal_vein_and_splenic_vein": (0, 112, 165),
    "heart": (206, 110, 84),
    "lung_upper_lobe_left": (197, 165, 145),
    "lung_lower_lobe_left": (172, 138, 115),
    "lung_upper_lobe_right": (197, 165, 145),
    "lung_middle_lobe_right": (182, 152, 131),
    "lung_lower_lobe_right": (172, 138, 115),
    "Anterior": (255, 190, 60),
    "Posterior": (60, 170, 255),
}


def label_color(value: int, name: str) -> RGB:
    """Return the display colour of a structure: a named colour, else a stable generated one.

    Args:
        value: Label value (drives the generated hue).
        name: Structure name.
    """
    if name in _NAMED_COLORS:
        return _NAMED_COLORS[name]
    hue = (value * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


def make_label_map(names: Mapping[int, str]) -> dict[int, LabelInfo]:
    """Build a label map with colours from ``{value: name}`` (background 0 dropped)."""
    return {
        int(v): LabelInfo(int(v), str(n), label_color(int(v), str(n)))
        for v, n in sorted(names.items())
        if int(v) != 0
    }


@cache
def _totalseg_total() -> dict[int, LabelInfo]:
    text = resources.files("medverse.core").joinpath("data/totalseg_total.json").read_text()
    return make_label_map({int(k): v for k, v in json.loads(text)["labels"].items()})


_LABEL_MAPS: dict[str, Any] = {
    "hippocampus": lambda: make_label_map({1: "Anterior", 2: "Posterior"}),
    "totalseg_total": _totalseg_total,
}

MODEL_PRESETS: dict[str, ModelPreset] = {
    "unet_small": ModelPreset(
        "unet_small",
        "UNet",
        {"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 2},
    ),
    "unet_brief": ModelPreset(
        "unet_brief",
        "UNet",
        {"channels": (16, 32, 64, 128, 256), "strides": (2, 2, 2, 2), "num_res_units": 2},
    ),
    "segresnet": ModelPreset(
        "segresnet", "SegResNet", {"init_filters": 16, "blocks_down": (1, 2, 2, 4)}
    ),
    "dynunet": ModelPreset(
        "dynunet",
        "DynUNet",
        {
            "kernel_size": ((3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
            "strides": ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
            "upsample_kernel_size": ((2, 2, 2), (2, 2, 2), (2, 2, 2)),
            "filters": (32, 64, 128, 256),
            "norm_name": "instance",
        },
    ),
}

TASKS: dict[str, Task] = {
    "hippocampus_mri": Task("hippocampus_mri", Modality.MR, "hippocampus", "dynunet"),
    "abdomen_ct": Task("abdomen_ct", Modality.CT, "totalseg_total", "segresnet"),
}


def label_map(name: str) -> dict[int, LabelInfo]:
    """Return the label map called ``name``.

    Raises:
        ConfigError: If no such label map is registered.
    """
    try:
        factory = _LABEL_MAPS[name]
    except KeyError:
        raise ConfigError(
            f"unknown label map {name!r}; known: {', '.join(sorted(_LABEL_MAPS))}"
        ) from None
    result: dict[int, LabelInfo] = factory()
    return result


def model_preset(name: str) -> ModelPreset:
    """Return the model preset called ``name``.

    Raises:
        ConfigError: If no such preset is registered.
    """
    try:
        return MODEL_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model preset {name!r}; known: {', '.join(sorted(MODEL_PRESETS))}"
        ) from None


def task(name: str) -> Task:
    """Return the task called ``name``.

    Raises:
        ConfigError: If no such task is registered.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None
