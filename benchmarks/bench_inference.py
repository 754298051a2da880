"""End-to-end inference seconds per study: the brief's plain MONAI pipeline vs medverse.

    python benchmarks/bench_inference.py [--quick] [--device cpu|cuda] [--json OUT]

Both pipelines run side by side in one process, with the same network weights (the brief's
UNet fitted on the real example CT, see bench_inference_data.py) on the same inputs (a
CT-sized 512x512x300 volume built from the sample CT, plus the real samples). Each run goes
from the input path to a written label file; runs alternate which pipeline goes first, and
every study's time is the median over the repeats. For each study it reports seconds per
step, peak memory, and how far medverse's labels agree with the reference's (voxel agreement
and per-class Dice on the input's grid, the reference's labels mapped there by nearest
neighbour). The last line is ``speedup_vs_monai_reference: X.XX``: total reference seconds
over total medverse seconds. Timings are wall clock on a possibly busy machine: compare the
ratio, which is measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference_data import CLASSES, Study, describe_inputs, fitted_checkpoint, studies
from bench_inference_measure import agreement, interleaved, labels_on_grid, machine, median
from bench_inference_measure import peak_memory as measure_memory
from bench_inference_pipelines import MedversePipeline, MonaiReference, RunResult

from medverse.engine.backends import cpu_has_bf16
from medverse.io.dicom import read_image

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 studies, 1 repeat")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--repeats", type=int, help="runs per study (default: 1 quick, 3 full)")
    return parser.parse_args(argv)


def medverse_options(device: str) -> dict[str, Any]:
    """Medverse's fast settings: same overlap as the reference, bf16 where native, skip air."""
    fast_cpu = device == "cpu" and cpu_has_bf16()
    return {
        "device": device,
        "overlap": 0.25,
        "precision": "bf16" if fast_cpu else "auto",
        "skip_background": True,
    }


def run_study(
    pipeline: Any, study: Study, out_root: Path, device: torch.device
) -> tuple[RunResult, dict[str, float]]:
    out_dir = Path(tempfile.mkdtemp(prefix=f"{pipeline.name}-", dir=out_root))
    with measure_memory(device) as memory:
        result = pipeline(study.path, out_dir)
    return result, memory


def compare(study: Study, reference: RunResult, ours: RunResult) -> dict[str, Any]:
    """Agreement on the reference's own 1.5 mm grid and on the input's grid.

    Each side is put on the other's grid by nearest neighbour. On the reference's grid this
    compares what both computed there; on the input grid the comparison also counts where
    the reference's nearest-neighbour upsampling and medverse's interpolated probabilities
    draw a boundary half a coarse voxel apart.
    """
    classes = sorted(CLASSES)
    native = read_image(study.path)
    mine = np.asarray(nib.load(str(ours.output)).dataobj)
    saved = nib.load(str(reference.output))
    theirs = np.asarray(saved.dataobj).reshape(saved.shape[:3])
    on_reference = labels_on_grid(ours.output, saved.affine, theirs.shape)
    on_native = labels_on_grid(reference.output, native.affine, native.shape)
    return {
        "shape": list(native.shape),
        "reference_grid": agreement(on_reference, theirs, classes),
        "input_grid": agreement(mine, on_native, classes),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 2
    repeats = args.repeats or (1 if args.quick else 3)
    checkpoint = fitted_checkpoint()
    inputs = studies(args.quick)
    pipelines = [
        MonaiReference(checkpoint, args.device),
        MedversePipeline(checkpoint, "medverse", **medverse_options(args.device)),
    ]
    record: dict[str, Any] = {
        "benchmark": "bench_inference.py" + (" --quick" if args.quick else ""),
        "device": machine(device),
        "repeats": repeats,
        "checkpoint": checkpoint.name,
        "inputs": describe_inputs(inputs),
        "pipelines": {p.name: p.settings() for p in pipelines},
        "studies": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        out_root = Path(tmp)
        print(f"warming up both pipelines on {inputs[1].name} (untimed)", flush=True)
        for pipeline in pipelines:
            run_study(pipeline, inputs[1], out_root, device)
        runs: dict[tuple[str, str], list[tuple[RunResult, dict[str, float]]]] = {}
        for _, order in interleaved(repeats, [p.name for p in pipelines]):
            for study in inputs:
                for name in order:
                    pipeline = next(p for p in pipelines if p.name == name)
                    result = run_study(pipeline, study, out_root, device)
                    runs.setdefault((study.name, name), []).append(result)
                    print(f"  {study.name:16s} {name:16s} {result[0].total:7.2f} s", flush=True)
        for study in inputs:
            record["studies"][study.name] = summarise(study, pipelines, runs)
    return report(record, pipelines, args.json)


def summarise(study: Study, pipelines: list[Any], runs: dict[Any, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for pipeline in pipelines:
        results = runs[(study.name, pipeline.name)]
        steps = {k: median([r.seconds[k] for r, _ in results]) for k in results[0][0].seconds}
        entry[pipeline.name] = {
            "seconds": [round(r.total, 3) for r, _ in results],
            "median_seconds": round(median([r.total for r, _ in results]), 3),
            "median_step_seconds": {k: round(v, 3) for k, v in steps.items()},
            "peak_rss_mib": round(max(m["peak_rss_mib"] for _, m in results), 1),
            **(
                {"peak_cuda_mib": round(max(m["peak_cuda_mib"] for _, m in results), 1)}
                if "peak_cuda_mib" in results[0][1]
                else {}
            ),
        }
    reference = runs[(study.name, pipelines[0].name)][-1][0]
    ours = runs[(study.name, pipelines[1].name)][-1][0]
    entry["agreement"] = compare(study, reference, ours)
    entry["speedup"] = round(
        entry[pipelines[0].name]["median_seconds"] / entry[pipelines[1].name]["median_seconds"], 3
    )
    return entry


def report(record: dict[str, Any], pipelines: list[Any], json_path: Path | None) -> int:
    ref_name, our_name = pipelines[0].name, pipelines[1].name
    studies_ = record["studies"]
    ref_total = sum(s[ref_name]["median_seconds"] for s in studies_.values())
    our_total = sum(s[our_name]["median_seconds"] for s in studies_.values())
    overall = {grid: _overall(studies_, grid) for grid in ("reference_grid", "input_grid")}
    record["device"]["load_average_at_end"] = list(os.getloadavg())
    record["totals"] = {
        "reference_seconds": round(ref_total, 3),
        "medverse_seconds": round(our_total, 3),
        "voxel_agreement_reference_grid": round(overall["reference_grid"], 6),
        "voxel_agreement_input_grid": round(overall["input_grid"], 6),
        "min_foreground_dice_reference_grid": round(
            min(
                s["agreement"]["reference_grid"]["foreground_dice_mean"] for s in studies_.values()
            ),
            4,
        ),
    }
    speedup = ref_total / our_total
    record["speedup_vs_monai_reference"] = round(speedup, 3)
    columns = ("reference s", "medverse s", "speedup", "agree ref", "agree in", "fg Dice")
    print(f"{'study':16s} " + " ".join(f"{c:>11s}" for c in (*columns, "ref MiB", "our MiB")))
    for name, s in studies_.items():
        ref, ours = s[ref_name], s[our_name]
        on_ref, on_input = s["agreement"]["reference_grid"], s["agreement"]["input_grid"]
        print(
            f"{name:16s} {ref['median_seconds']:11.2f} {ours['median_seconds']:11.2f} "
            f"{s['speedup']:11.2f} {on_ref['voxel_agreement']:11.5f} "
            f"{on_input['voxel_agreement']:11.5f} {on_ref['foreground_dice_mean']:11.4f} "
            f"{ref['peak_rss_mib']:11.0f} {ours['peak_rss_mib']:11.0f}"
        )
    print(f"medverse settings: {json.dumps(record['pipelines'][our_name])}")
    print(
        f"voxel agreement, all studies: {overall['reference_grid']:.5f} on the reference's "
        f"grid, {overall['input_grid']:.5f} on the input grid"
    )
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {json_path}")
    print(f"speedup_vs_monai_reference: {speedup:.2f}")
    return 0


def _overall(studies: dict[str, Any], grid: str) -> float:
    """Voxel agreement over all studies together (weighted by their voxel counts)."""
    agreed = sum(s["agreement"][grid]["voxel_agreement"] * s["agreement"][grid]["voxels"]
                 for s in studies.values())  # fmt: skip
    return float(agreed / sum(s["agreement"][grid]["voxels"] for s in studies.values()))


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"(benchmark wall time {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    sys.exit(code)
