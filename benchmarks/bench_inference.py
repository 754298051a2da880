"""End-to-end inference seconds per study: medverse vs two named MONAI baselines.

    python benchmarks/bench_inference.py [--quick] [--device cpu|cuda] [--json OUT]
                                         [--weights PATH|random] [--precision fp32|auto|bf16|int8]

Baselines, with the same network weights (the brief's UNet fitted on the real example CT,
shipped under models/, see bench_inference_data.py):
(1) the brief's plain MONAI pipeline, in this process, on the CT-sized 512x512x300 volume
    and the real samples, against medverse's Predictor (same overlap 0.25);
(2) the MONAI bundle runner (``python -m monai.bundle run``) on a spleen_ct_segmentation-
    shaped bundle built here from the same weights, against ``medverse segment --bundle``,
    each a whole process, on the CT-sized volume (overlap 0.5, the bundle's).
Runs are paired and alternate which side goes first; each figure is the median over the
repeats, with the load average at its start. The network runs in float32 on every side
(``--precision fp32``, the default, forces it on CPUs that have bf16); ``--precision int8``
runs medverse's network in OpenVINO int8 (NNCF, calibrated and checked once, untimed, on the
real example CT the weights were fitted on; float32 if the check fails); ``--precision bf16``
(only on CPUs with AVX512-BF16 or AMX) runs medverse's network in bf16 (the baselines stay
float32, as a MONAI user runs them). Medverse's labels are
also compared with a float32 torch-eager run of every window (the acceptance's agreement).
The last two lines are ``speedup_vs_monai_bundle_runner: X.XX`` and
``speedup_vs_monai_reference: X.XX`` (total baseline seconds over medverse's).
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

from bench_inference_bundle import build_bundle, race
from bench_inference_data import (
    CLASSES,
    Study,
    describe_inputs,
    fitted_checkpoint,
    random_checkpoint,
    shipped_checkpoint,
    studies,
    warmup_volume,
)
from bench_inference_measure import agreement, interleaved, labels_on_grid, machine, median
from bench_inference_measure import peak_memory as measure_memory
from bench_inference_pipelines import MedversePipeline, MonaiReference, RunResult, calibrate_int8

from medverse.engine.cpu_isa import cpu_isa
from medverse.io.dicom import read_image

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 studies (the CT-sized one first), 1 repeat"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--repeats", type=int, help="runs per study (default: 1 quick, 3 full)")
    parser.add_argument(
        "--weights",
        help="checkpoint to use, or 'random' (fixed seed; timing only); default: the fitted "
        "weights models/ ships, else the cached fit, else fit them (about an hour on 2 cores)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "auto", "bf16", "int8"),
        default="fp32",
        help="medverse's network arithmetic: fp32 (default, also on CPUs with bf16), auto, "
        "bf16 (CPUs with AVX512-BF16/AMX), or "
        "int8 (OpenVINO + NNCF, calibrated once on the example CT, untimed; float32 if its "
        "labels do not agree with float32 there)",
    )
    parser.add_argument("--no-bundle", action="store_true", help="skip the bundle-runner race")
    return parser.parse_args(argv)


def choose_checkpoint(weights: str | None) -> tuple[Path, str]:
    """The weights and where they come from (``shipped``, ``fitted``, ``random`` or a path)."""
    if weights == "random":
        return random_checkpoint(), "random (fixed seed; agreement figures do not count)"
    if weights:
        return Path(weights), "given"
    shipped = shipped_checkpoint()
    if shipped is not None:
        return shipped, "shipped fitted weights"
    return fitted_checkpoint(), "fitted here (cached)"


def medverse_options(device: str, precision: str) -> dict[str, Any]:
    """Medverse's fast settings: the reference's overlap, the device's auto backend, skip air."""
    return {
        "device": device,
        "overlap": 0.25,
        "backend": "auto",
        "precision": precision,
        "skip_background": True,
    }


EAGER_OPTIONS = {"overlap": 0.25, "backend": "torch", "precision": "fp32"}
"""The agreement reference: every window in float32 torch eager, nothing skipped."""


def run_study(
    pipeline: Any, study: Study, out_root: Path, device: torch.device
) -> tuple[RunResult, dict[str, float]]:
    out_dir = Path(tempfile.mkdtemp(prefix=f"{pipeline.name}-", dir=out_root))
    cpu = time.process_time()
    with measure_memory(device) as memory:
        result = pipeline(study.path, out_dir)
    memory["cpu_seconds"] = time.process_time() - cpu  # all threads of this process
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
    checkpoint, origin = choose_checkpoint(args.weights)
    inputs = studies(args.quick)
    pipelines = [
        MonaiReference(checkpoint, args.device),
        MedversePipeline(checkpoint, "medverse", **medverse_options(args.device, args.precision)),
    ]
    eager = MedversePipeline(checkpoint, "torch_fp32_eager", device=args.device, **EAGER_OPTIONS)
    calibration = next(s for s in inputs if s.name == "example_ct_3mm")
    network = calibrate_int8(pipelines[1].predictor, calibration.path)  # int8 only; cached
    record: dict[str, Any] = {
        "benchmark": "bench_inference.py" + (" --quick" if args.quick else ""),
        "device": {**machine(device), "cpu_isa": str(cpu_isa())},
        "repeats": repeats,
        "checkpoint": checkpoint.name,
        "weights": origin,
        "inputs": describe_inputs(inputs),
        "pipelines": {p.name: p.settings() for p in [*pipelines, eager]},
        "studies": {},
    }
    print(f"weights: {checkpoint} ({origin}); CPU {record['device']['cpu_isa']}; medverse "
          f"network: {network}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        out_root = Path(tmp)
        warmup = warmup_volume()
        print(f"warming up both pipelines on {warmup.description}", flush=True)
        for pipeline in pipelines:
            run_study(pipeline, warmup, out_root, device)
        runs: dict[tuple[str, str], list[tuple[RunResult, dict[str, float]]]] = {}
        for _, order in interleaved(repeats, [p.name for p in pipelines]):
            for study in inputs:
                for name in order:
                    pipeline = next(p for p in pipelines if p.name == name)
                    result = run_study(pipeline, study, out_root, device)
                    runs.setdefault((study.name, name), []).append(result)
                    print(f"  {study.name:16s} {name:16s} {result[0].total:7.2f} s wall "
                          f"{result[1]['cpu_seconds']:7.2f} s CPU "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)  # fmt: skip
        for study in inputs:
            eager_run = run_study(eager, study, out_root, device)[0]
            record["studies"][study.name] = summarise(study, pipelines, runs, eager_run)
        if not args.no_bundle and device.type == "cpu":
            record["bundle_race"] = bundle_race(
                checkpoint, inputs[0], out_root, repeats, args.precision, calibration.path
            )
    return report(record, pipelines, args.json)


def bundle_race(
    checkpoint: Path, study: Study, work: Path, repeats: int, precision: str, calibration: Path
) -> dict[str, Any]:
    """The bundle runner vs ``medverse segment --bundle`` on ``study``, whole processes."""
    bundle = build_bundle(checkpoint, work / "bundle")
    print(f"bundle race on {study.name}: warm-up (one-time ONNX export, cached)", flush=True)
    raced = race(bundle, study.path, work / "race", repeats, precision=precision,
                 calibration=calibration)  # fmt: skip
    entry: dict[str, Any] = {
        "study": study.name,
        "warmup_with_export_s": raced["warmup_with_export_s"],
        "medverse_precision": precision,
        "medverse_network": raced["network"],
    }
    for name, results in raced["runs"].items():
        entry[name] = {
            "wall_seconds": [round(r.wall_s, 2) for r in results],
            "cpu_seconds": [round(r.cpu_s, 2) for r in results],
            "load_average_at_start": [round(r.load_average[0], 2) for r in results],
            "median_wall_seconds": round(median([r.wall_s for r in results]), 2),
            "median_cpu_seconds": round(median([r.cpu_s for r in results]), 2),
            "peak_rss_mib": round(max(r.peak_rss_mib for r in results), 1),
        }
    runner, ours = raced["runs"]["monai_bundle_runner"][-1], raced["runs"]["medverse_segment"][-1]
    native = read_image(study.path)
    theirs = labels_on_grid(runner.output, native.affine, native.shape)
    mine = labels_on_grid(ours.output, native.affine, native.shape)
    entry["agreement_with_runner"] = agreement(mine, theirs, sorted(CLASSES))
    wall = entry["monai_bundle_runner"]["median_wall_seconds"]
    entry["speedup"] = round(wall / entry["medverse_segment"]["median_wall_seconds"], 3)
    cpu = entry["monai_bundle_runner"]["median_cpu_seconds"]
    entry["speedup_cpu_seconds"] = round(cpu / entry["medverse_segment"]["median_cpu_seconds"], 3)
    return entry


def summarise(
    study: Study, pipelines: list[Any], runs: dict[Any, Any], eager: RunResult
) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for pipeline in pipelines:
        results = runs[(study.name, pipeline.name)]
        steps = {k: median([r.seconds[k] for r, _ in results]) for k in results[0][0].seconds}
        entry[pipeline.name] = {
            "seconds": [round(r.total, 3) for r, _ in results],
            "median_seconds": round(median([r.total for r, _ in results]), 3),
            "median_step_seconds": {k: round(v, 3) for k, v in steps.items()},
            "median_cpu_seconds": round(median([m["cpu_seconds"] for _, m in results]), 3),
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
    mine = np.asarray(nib.load(str(ours.output)).dataobj)
    exact = np.asarray(nib.load(str(eager.output)).dataobj)
    entry["agreement_vs_fp32_eager"] = agreement(mine, exact, sorted(CLASSES))
    ref, ours_ = entry[pipelines[0].name], entry[pipelines[1].name]
    entry["speedup"] = round(ref["median_seconds"] / ours_["median_seconds"], 3)
    entry["speedup_cpu_seconds"] = round(ref["median_cpu_seconds"] / ours_["median_cpu_seconds"], 3)
    return entry


def report(record: dict[str, Any], pipelines: list[Any], json_path: Path | None) -> int:
    ref_name, our_name = pipelines[0].name, pipelines[1].name
    studies_ = record["studies"]
    ref_total = sum(s[ref_name]["median_seconds"] for s in studies_.values())
    our_total = sum(s[our_name]["median_seconds"] for s in studies_.values())
    grids = ("reference_grid", "input_grid", "fp32_eager")
    overall = {grid: _overall(studies_, grid) for grid in grids}
    record["device"]["load_average_at_end"] = list(os.getloadavg())
    record["totals"] = {
        "reference_seconds": round(ref_total, 3),
        "medverse_seconds": round(our_total, 3),
        "reference_cpu_seconds": round(_total_cpu(studies_, ref_name), 3),
        "medverse_cpu_seconds": round(_total_cpu(studies_, our_name), 3),
        "voxel_agreement_reference_grid": round(overall["reference_grid"], 6),
        "voxel_agreement_input_grid": round(overall["input_grid"], 6),
        "voxel_agreement_vs_fp32_eager": round(overall["fp32_eager"], 6),
        "min_foreground_dice_vs_fp32_eager": round(
            min(s["agreement_vs_fp32_eager"]["foreground_dice_mean"] for s in studies_.values()),
            4,
        ),
    }
    speedup = ref_total / our_total
    record["speedup_vs_monai_reference"] = round(speedup, 3)
    _print_studies(studies_, ref_name, our_name)
    _print_rows(record, ref_name, our_name)
    print(
        f"voxel agreement, all studies: {overall['fp32_eager']:.5f} vs float32 torch eager "
        f"(every window), {overall['reference_grid']:.5f} vs the brief pipeline on its grid; "
        f"weights: {record['weights']}"
    )
    race = record.get("bundle_race")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {json_path}")
    print(f"speedup_vs_monai_bundle_runner: {race['speedup']:.2f}" if race else
          "speedup_vs_monai_bundle_runner: n/a")  # fmt: skip
    print(f"speedup_vs_monai_reference: {speedup:.2f}")
    return 0


def _print_studies(studies_: dict[str, Any], ref_name: str, our_name: str) -> None:
    columns = ("reference s", "medverse s", "speedup", "CPU-s x", "vs eager", "vs ref", "fg Dice")
    print(f"{'study':16s} " + " ".join(f"{c:>11s}" for c in (*columns, "ref MiB", "our MiB")))
    for name, s in studies_.items():
        ref, ours = s[ref_name], s[our_name]
        exact, on_ref = s["agreement_vs_fp32_eager"], s["agreement"]["reference_grid"]
        print(
            f"{name:16s} {ref['median_seconds']:11.2f} {ours['median_seconds']:11.2f} "
            f"{s['speedup']:11.2f} {s['speedup_cpu_seconds']:11.2f} "
            f"{exact['voxel_agreement']:11.5f} "
            f"{on_ref['voxel_agreement']:11.5f} {exact['foreground_dice_mean']:11.4f} "
            f"{ref['peak_rss_mib']:11.0f} {ours['peak_rss_mib']:11.0f}"
        )


def _print_rows(record: dict[str, Any], ref_name: str, our_name: str) -> None:
    """One row per pipeline: seconds on the CT-sized study, CPU ISA, threads, precision."""
    isa, threads = record["device"]["cpu_isa"], record["device"]["torch_threads"]
    ours = record["pipelines"][our_name]
    first = next(iter(record["studies"].values()))
    rows = [
        (ref_name, first[ref_name]["median_seconds"], "fp32", ""),
        (our_name, first[our_name]["median_seconds"], ours["precision"], ours["backend"]),
    ]
    race = record.get("bundle_race")
    if race:
        for name in ("monai_bundle_runner", "medverse_segment"):
            ours_ = name == "medverse_segment"
            backend = ours["backend"] if ours_ else "torch"
            precision = _race_precision(race) if ours_ else "fp32"
            rows.append((name, race[name]["median_wall_seconds"], precision, backend))
    print(f"{'pipeline':22s} {'CT-sized s':>10s} {'CPU ISA':>8s} {'threads':>7s}  precision")
    for name, seconds, precision, backend in rows:
        where = f" ({backend})" if backend else ""
        print(f"{name:22s} {seconds:10.2f} {isa:>8s} {threads:7d}  {precision}{where}")


def _race_precision(race: dict[str, Any]) -> str:
    """What ``medverse segment`` ran in the race: int8 only if its check kept it."""
    asked = race.get("medverse_precision", "fp32")
    if asked != "int8":
        return asked
    return "int8" if "int8 kept" in race.get("medverse_network", "") else "fp32 (int8 not kept)"


def _total_cpu(studies: dict[str, Any], name: str) -> float:
    """Median process CPU seconds of one pipeline, summed over the studies."""
    return float(sum(s[name]["median_cpu_seconds"] for s in studies.values()))


def _overall(studies: dict[str, Any], grid: str) -> float:
    """Voxel agreement over all studies together (weighted by their voxel counts)."""
    found = [s["agreement_vs_fp32_eager"] if grid == "fp32_eager" else s["agreement"][grid]
             for s in studies.values()]  # fmt: skip
    agreed = sum(a["voxel_agreement"] * a["voxels"] for a in found)
    return float(agreed / sum(a["voxels"] for a in found))


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"(benchmark wall time {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    sys.exit(code)
