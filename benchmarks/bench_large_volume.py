"""Peak memory of segmenting a 512 x 512 x 1000 CT on the CPU (the issue's bound: 8 GB RSS).

    python benchmarks/bench_large_volume.py [--json OUT]

Builds (once, cached) a 512 x 512 x 1000 int16 NIfTI at 0.8 x 0.8 x 0.5 mm from the real
example CT (linear upsampling, mirrored along z to cover 500 mm, air outside its field of
view, seeded noise), then segments it in a fresh subprocess with the fitted benchmark
weights: read_image -> Predictor.predict -> write_nifti, exactly what `medverse segment`
does before its extra outputs. The child's peak RSS comes from ``resource.getrusage`` (and
``VmHWM`` in ``/proc``); the parent reports both with the seconds of each step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference_data import EXAMPLE_CT, FIT_SEED, cache_dir, fitted_checkpoint
from bench_inference_measure import machine

from medverse.io.nifti import read_nifti
from medverse.preprocessing.resample import resample_tensor
from medverse.preprocessing.taps import axis_map

SHAPE = (512, 512, 1000)
SPACING = (0.8, 0.8, 0.5)
LIMIT_MIB = 8 * 1024
RESULTS = Path(__file__).resolve().parent / "results"


def large_volume() -> Path:
    """The 512 x 512 x 1000 study (built slab by slab, so building it stays small too)."""
    path = cache_dir() / "ct_512x512x1000.nii.gz"
    if path.exists():
        return path
    source = read_nifti(EXAMPLE_CT)
    raw = torch.from_numpy(np.asarray(source.array, dtype=np.float32))
    old = np.linalg.norm(source.affine[:3, :3], axis=0)
    affine = np.eye(4)
    affine[:3, :3] = source.affine[:3, :3] * (np.asarray(SPACING) / old)
    centre = source.affine[:3, :3] @ ((np.asarray(source.shape) - 1) / 2) + source.affine[:3, 3]
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(SHAPE) - 1) / 2)
    mirrored = torch.cat([raw.flip(2), raw, raw.flip(2)], dim=2)  # 3 x 336 mm along z
    mirrored_affine = source.affine.copy()
    mirrored_affine[:3, 3] -= source.affine[:3, 2] * source.shape[2]
    mapping = axis_map(mirrored_affine, affine)
    assert mapping is not None
    array = np.empty(SHAPE, dtype=np.int16)
    rng = np.random.default_rng(FIT_SEED)
    inside_xy = _inside_xy(mapping, source.shape)
    for k0 in range(0, SHAPE[2], 100):
        shift = np.eye(4)
        shift[2, 3] = k0
        slab = (SHAPE[0], SHAPE[1], 100)
        hu = resample_tensor(
            mirrored, mirrored_affine, affine @ shift, slab, order=1, padding="border"
        ).numpy()
        hu[np.broadcast_to(~inside_xy, hu.shape)] = -1024.0
        hu += rng.normal(0.0, 12.0, size=hu.shape).astype(np.float32)
        array[:, :, k0 : k0 + 100] = np.clip(np.rint(hu), -1024, 3071)
    image = nib.Nifti1Image(array, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, str(path))
    return path


def _inside_xy(mapping: Any, source_shape: tuple[int, ...]) -> np.ndarray:
    masks = []
    for axis in range(2):
        coord = np.arange(SHAPE[axis]) * mapping.scale[axis] + mapping.offset[axis]
        masks.append((coord >= -0.5) & (coord <= source_shape[axis] - 0.5))
    return (masks[0][:, None] & masks[1][None, :])[:, :, None]


def child(volume: Path, checkpoint: Path, out: Path, options: dict[str, Any]) -> None:
    """Runs in the subprocess: segment, then print one JSON line of measurements."""
    from medverse.inference.predictor import Predictor
    from medverse.io.dicom import read_image
    from medverse.io.nifti import write_nifti
    from medverse.models.checkpoint import load_checkpoint

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    predictor = Predictor(load_checkpoint(checkpoint), device="cpu", **options)
    image = read_image(volume)
    seconds["read"] = time.perf_counter() - start
    labels = predictor.predict(image)
    seconds["predict"] = time.perf_counter() - start - seconds["read"]
    write_nifti(labels, out)
    seconds["write"] = time.perf_counter() - start - seconds["read"] - seconds["predict"]
    hwm = next(
        int(line.split()[1]) / 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found = {int(v): int((labels.array == v).sum()) for v in predictor.labels}
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mib_getrusage": usage,
                "peak_rss_mib_vmhwm": hwm,
                "labels_shape": list(labels.shape),
                "voxels_per_label": found,
                "settings": predictor.describe(),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "large_volume_cpu.json")
    parser.add_argument("--fp32", action="store_true", help="float32 instead of bf16")
    parser.add_argument("--child", nargs=3, metavar=("VOLUME", "CHECKPOINT", "OUT"))
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*(Path(p) for p in args.child), json.loads(args.options))
        return 0
    options = {
        "overlap": 0.25,
        "skip_background": True,
        "precision": "fp32" if args.fp32 else "bf16",
    }
    volume, checkpoint = large_volume(), fitted_checkpoint()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "labels.nii.gz"
        command = [sys.executable, __file__, "--child", str(volume), str(checkpoint), str(out)]
        start = time.perf_counter()
        done = subprocess.run(
            [*command, "--options", json.dumps(options)], capture_output=True, text=True
        )
        wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak = max(measured["peak_rss_mib_getrusage"], measured["peak_rss_mib_vmhwm"], children)
    record = {
        "benchmark": "bench_large_volume.py",
        "device": machine(torch.device("cpu")),
        "volume": {"shape": list(SHAPE), "spacing_mm": list(SPACING), "dtype": "int16"},
        "wall_seconds_subprocess": round(wall, 2),
        **measured,
        "peak_rss_mib_children": children,
        "peak_rss_mib": round(peak, 1),
        "limit_mib": LIMIT_MIB,
        "within_limit": peak < LIMIT_MIB,
        "load_average_at_end": list(os.getloadavg()),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("seconds", "voxels_per_label")}))
    print(f"wrote {args.json}")
    print(
        f"peak_rss_mib: {peak:.0f} (limit {LIMIT_MIB}, {'within' if peak < LIMIT_MIB else 'OVER'})"
    )
    return 0 if peak < LIMIT_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
