"""The MONAI bundle runner against ``medverse segment --bundle``, each a whole process.

The bundle is laid out as spleen_ct_segmentation ships it (``configs/inference.json``,
``configs/metadata.json``, ``models/model.pt``) and built here from the benchmark's weights,
with nothing downloaded: the brief's UNet (16-256, instance norm), RAS orientation,
Spacingd 1.5 x 1.5 x 2.0 mm, ScaleIntensityRanged -175..250 -> 0..1, SlidingWindowInferer
96^3 / sw_batch_size 4 / overlap 0.5 (the spleen bundle's), softmax, Invertd back to the
input grid, argmax, SaveImaged. The data loader has no worker processes (one image: forking
workers would only slow the runner down).

Each side is one process, from ``python`` starting to the labels file written, timed by the
parent: wall seconds, CPU seconds and peak RSS of the child (``os.wait4``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medverse.models.checkpoint import load_checkpoint

SPLEEN_OVERLAP = 0.5
SPLEEN_SW_BATCH = 4
MEDVERSE_FLAGS = ["--skip-air"]
"""medverse's window savings in the race (its backend is the default: auto, float32 here).

``--coarse-first`` is left out: on this CT every 96^3 box is near an organ, so it skips no
window, and waiting for each band's first pass keeps the network from running ahead."""


def inference_config(
    roi: list[int], spacing: list[float], window: tuple[float, float], network_def: dict[str, Any]
) -> dict[str, Any]:
    """spleen_ct_segmentation's inference.json with this benchmark's network and window."""
    preprocessing = [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": spacing, "mode": "bilinear"},
        {
            "_target_": "ScaleIntensityRanged",
            "keys": "image",
            "a_min": window[0],
            "a_max": window[1],
            "b_min": 0.0,
            "b_max": 1.0,
            "clip": False,
        },
        {"_target_": "EnsureTyped", "keys": "image"},
    ]
    postprocessing = [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {
            "_target_": "Invertd",
            "keys": "pred",
            "transform": "@preprocessing",
            "orig_keys": "image",
            "nearest_interp": False,
            "to_tensor": True,
        },
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {
            "_target_": "SaveImaged",
            "keys": "pred",
            "output_dir": "@output_dir",
            "output_postfix": "seg",
            "output_dtype": "$np.uint8",
            "separate_folder": False,
            "print_log": False,
        },
    ]
    return {
        "imports": ["$import glob", "$import numpy as np"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "datalist": [],
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "dataset": {
            "_target_": "Dataset",
            "data": "$[{'image': i} for i in @datalist]",
            "transform": "@preprocessing",
        },
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": roi,
            "sw_batch_size": SPLEEN_SW_BATCH,
            "overlap": SPLEEN_OVERLAP,
        },
        "postprocessing": {"_target_": "Compose", "transforms": postprocessing},
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
        },
        "checkpointloader": {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
        },
        "initialize": [
            "$monai.utils.set_determinism(seed=123)",
            "$@checkpointloader(@evaluator)",
        ],
        "run": ["$@evaluator.run()"],
    }


def build_bundle(checkpoint: Path, root: Path) -> Path:
    """A spleen-shaped bundle at ``root`` holding the checkpoint's weights (rebuilt each run)."""
    model = load_checkpoint(checkpoint)
    plan = model.plan
    network_def = {
        "_target_": "UNet",
        "spatial_dims": 3,
        "in_channels": model.in_channels,
        "out_channels": model.out_channels,
        "channels": [16, 32, 64, 128, 256],
        "strides": [2, 2, 2, 2],
        "num_res_units": 2,
    }
    if model.preset != "unet_brief":
        raise ValueError(f"{checkpoint}: preset {model.preset}, not the brief's UNet")
    window = (float(plan.mean), float(plan.mean + plan.std))  # ct_window: (x - mean) / std
    config = inference_config(
        list(plan.patch_size), [float(s) for s in plan.target_spacing], window, network_def
    )
    classes = {"0": "background", **{str(k): v for k, v in sorted(model.labels.items())}}
    metadata = {
        "version": "0.1.0",
        "task": "abdominal organs, benchmark bundle built from medverse weights",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield",
                    "modality": "CT",
                    "num_channels": 1,
                    "spatial_shape": list(plan.patch_size),
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": len(classes),
                    "channel_def": classes,
                }
            },
        },
    }
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=1))
    torch.save(model.network.state_dict(), root / "models" / "model.pt")
    return root


@dataclass
class ProcessRun:
    """One whole-process run: wall and CPU seconds, peak RSS, the labels it wrote."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    output: Path
    load_average: tuple[float, float, float]


def _run(argv: list[str], cwd: Path, log: Path, expect: str, out_dir: Path) -> ProcessRun:
    load = os.getloadavg()
    start = time.perf_counter()
    with log.open("w") as stream:
        process = subprocess.Popen(argv, cwd=cwd, stdout=stream, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    found = sorted(out_dir.glob(expect))
    if process.returncode != 0 or not found:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{argv[:4]} failed ({process.returncode}):\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime
    return ProcessRun(wall, cpu, usage.ru_maxrss / 1024.0, found[-1], load)


def run_bundle_runner(bundle: Path, image: Path, out_dir: Path) -> ProcessRun:
    """``python -m monai.bundle run --config_file B/configs/inference.json`` on one image."""
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(bundle / "configs" / "inference.json"),
        "--bundle_root",
        str(bundle),
        "--datalist",
        f"['{image}']",
        "--output_dir",
        str(out_dir),
    ]
    return _run(argv, bundle, out_dir / "runner.log", "*_seg.nii*", out_dir)


def run_medverse_segment(
    bundle: Path, image: Path, out_dir: Path, extra: list[str] | None = None
) -> ProcessRun:
    """``medverse segment IMAGE --bundle B --out O --device cpu [extra]``."""
    argv = [
        sys.executable,
        "-m",
        "medverse",
        "segment",
        str(image),
        "--bundle",
        str(bundle),
        "--out",
        str(out_dir),
        "--device",
        "cpu",
        *(extra or []),
    ]
    log = out_dir.parent / f"{out_dir.name}.log"
    return _run(argv, bundle, log, "*/labels.nii.gz", out_dir)


def race(
    bundle: Path,
    image: Path,
    work: Path,
    repeats: int,
    log: Any = print,
    *,
    precision: str = "fp32",
    calibration: Path | None = None,
) -> dict[str, Any]:
    """Paired, interleaved whole-process runs: the bundle runner and medverse on one image.

    medverse runs ``segment --many --labels-only`` on a folder holding only ``image``: the
    same output as the runner (one labels NIfTI on the input grid). Its one-time ONNX export
    (cached per weights) and bundle description (cached per bundle bytes) are made first,
    untimed, in this process (as ``medverse segment`` would on its first run); with
    ``precision="int8"`` so is its int8 calibration and check, on ``calibration`` (cached
    beside the export; float32 runs if the check fails).
    """
    from bench_inference_pipelines import calibrate_int8

    from medverse.engine.backends import resolve_kind
    from medverse.engine.openvino_backend import cached_onnx
    from medverse.inference.loading import load_model
    from medverse.inference.predictor import Predictor

    folder = work / "study"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / image.name
    if not link.exists():
        link.symlink_to(image)
    medverse_args = ["--many", "--labels-only", *MEDVERSE_FLAGS]
    start = time.perf_counter()
    model = load_model(bundle, map_location="cpu", lazy=True)  # caches its description
    cached_onnx(model)
    kind = resolve_kind(torch.device("cpu"), "auto", precision)
    network = f"{kind} {'float32' if precision == 'fp32' else precision}"
    if precision != "fp32":
        medverse_args += ["--precision", precision]
    if precision == "int8" and calibration is not None:
        options = {"backend": "auto", "precision": "int8", "skip_background": True}
        network = calibrate_int8(Predictor(model, device="cpu", **options), calibration)
        log(f"  medverse_segment network: {network}")
    export_s = time.perf_counter() - start
    runs: dict[str, list[ProcessRun]] = {"monai_bundle_runner": [], "medverse_segment": []}
    for r in range(repeats):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            out = work / f"{name}-{r}"
            if name == "monai_bundle_runner":
                result = run_bundle_runner(bundle, image, out)
            else:
                result = run_medverse_segment(bundle, folder, out, medverse_args)
            runs[name].append(result)
            log(f"  {image.name:24s} {name:20s} {result.wall_s:7.2f} s wall "
                f"{result.cpu_s:7.2f} s CPU {result.peak_rss_mib:6.0f} MiB "
                f"(load {result.load_average[0]:.2f})")  # fmt: skip
    return {"runs": runs, "warmup_with_export_s": export_s, "network": network}
