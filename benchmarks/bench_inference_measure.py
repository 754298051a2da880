"""Measurements for the inference benchmark: peak memory per run, label agreement, the machine."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak RSS (MiB) of this process during the block, and peak CUDA memory on a GPU.

    Linux resets the RSS high-water mark when ``5`` is written to ``/proc/self/clear_refs``,
    so runs in one process are measured separately.
    """
    record: dict[str, float] = {}
    resettable = _reset_hwm()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield record
    record["peak_rss_mib"] = _status_mib("VmHWM") if resettable else float("nan")
    if device.type == "cuda":
        record["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def labels_on_grid(path: Path, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A saved label map put onto another grid by nearest neighbour (axis-aligned grids only).

    Voxels outside the saved map's field of view are background.
    """
    image = nib.load(str(path))
    labels = np.asarray(image.dataobj)
    labels = labels.reshape(labels.shape[:3]) if labels.ndim > 3 else labels
    mapping = np.linalg.inv(np.asarray(image.affine, np.float64)) @ np.asarray(affine)
    linear = mapping[:3, :3]
    if not np.allclose(linear - np.diag(np.diag(linear)), 0.0, atol=1e-4):
        raise ValueError(f"{path}: grids are not axis-aligned")
    indices, inside = [], []
    for axis in range(3):
        coord = np.arange(shape[axis]) * linear[axis, axis] + mapping[axis, 3]
        index = np.rint(coord).astype(np.int64)
        inside.append((index >= 0) & (index < labels.shape[axis]))
        indices.append(np.clip(index, 0, labels.shape[axis] - 1))
    out = labels[np.ix_(*indices)]
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    return np.where(mask, out, 0).astype(np.uint8)


def agreement(ours: np.ndarray, theirs: np.ndarray, classes: list[int]) -> dict[str, Any]:
    """Voxel agreement and per-class Dice (None where neither has the class) on one grid."""
    dice: dict[str, float | None] = {}
    for value in classes:
        a, b = ours == value, theirs == value
        total = int(a.sum()) + int(b.sum())
        dice[str(value)] = 2.0 * int((a & b).sum()) / total if total else None
    present = [d for d in dice.values() if d is not None]
    return {
        "voxels": int(ours.size),
        "voxel_agreement": float((ours == theirs).mean()),
        "dice_per_class": dice,
        "foreground_dice_mean": float(np.mean(present)) if present else 1.0,
        "foreground_voxels_reference": int((theirs > 0).sum()),
        "foreground_voxels_medverse": int((ours > 0).sum()),
    }


def machine(device: torch.device) -> dict[str, Any]:
    """The device the numbers belong to: CPU model and cores, GPU name, library versions."""
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    caps = torch.cpu.get_capabilities()
    info: dict[str, Any] = {
        "kind": device.type,
        "cpu_model": model,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": bool(caps.get("avx512_bf16") or caps.get("amx_bf16")),
        "torch": torch.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def median(values: list[float]) -> float:
    """The median (the mean of the middle two for an even count)."""
    return float(np.median(values)) if values else float("nan")


def interleaved(repeats: int, names: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Repeat index and pipeline order, alternating which pipeline goes first."""
    for r in range(repeats):
        yield r, names if r % 2 == 0 else list(reversed(names))


Log = Callable[[str], None]
