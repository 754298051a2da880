"""DICOM ingest: medverse `convert` against dcm2niix and SimpleITK's series reader.

    python benchmarks/bench_dicom.py [--repeats 5] [--json OUT]

Each series folder (the six vendor samples, the TotalSegmentator CT series and the five
series of the MR brain study, all under ../shared/data) is converted to an uncompressed
``.nii`` by each tool, ``--repeats`` times in rotating order; a series' figure is the median.

* medverse: what ``medverse convert`` does (multi-volume check, read, write), in this process
  (no interpreter start-up counted), with a cold folder index (the folder's index is deleted
  before each run); the warm figure (``info`` already ran, index present) is reported apart.
* dcm2niix: ``dcm2niix -z n`` in a process per series (its start-up, ~2 ms, is counted).
* SimpleITK: ``ImageSeriesReader`` on the folder's first GDCM series + ``WriteImage`` in this
  process (it reads a mosaic as tiled 2D images and a 4D series as one stack: its output is
  not the same volume, but it read the same files).

The ratios use process CPU seconds (user + system, children for dcm2niix), which other work
on a shared machine disturbs far less than wall time; wall seconds are reported too. The last
two lines are the ratios of the summed medians.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"


def series_folders() -> list[Path]:
    """The shared sample series, one folder each."""
    vendor = sorted(p for p in (DATA / "dicom_vendor_samples").iterdir() if p.is_dir())
    brain = sorted(p for p in (DATA / "dicom_mr_study_brain").iterdir() if p.is_dir())
    return [*vendor, DATA / "dicom_ct_series_totalsegmentator" / "dicom", *brain]


def machine() -> dict[str, Any]:
    """CPU model, ISA flags and threads of this run (from /proc/cpuinfo)."""
    flags: set[str] = set()
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    from medverse.io.dicom.pixels import DECODE_THREADS, THREAD_MIN_FILES

    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "isa": {k: k in flags for k in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")},
        "decode_threads": DECODE_THREADS,
        "threads_from_compressed_files": THREAD_MIN_FILES,
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "precision": "stored integers; float32 where RescaleSlope/Intercept apply",
    }


def _cpu(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(run: Callable[[], object], children: bool = False) -> tuple[float, float]:
    cpu, wall = _cpu(children), time.perf_counter()
    run()
    return time.perf_counter() - wall, _cpu(children) - cpu


def run_medverse(folder: Path, out: Path, *, cold: bool) -> None:
    """What `medverse convert FOLDER OUT.nii` does, with the folder index cold or warm."""
    from medverse.io.dicom import convert_to_nifti, index, scan
    from medverse.io.dicom.volumes import convert_volumes, is_multi_volume

    if cold:
        index_file = index._index_file(folder, scan._header_or_skip, index.DEFAULT_INDEX_DIR)
        index_file.unlink(missing_ok=True)
    if is_multi_volume(folder):
        convert_volumes(folder, out / "medverse.nii")
    else:
        convert_to_nifti(folder, out / "medverse.nii")


def run_dcm2niix(folder: Path, out: Path) -> None:
    """dcm2niix, uncompressed NIfTI (its default BIDS sidecar kept)."""
    command = ["dcm2niix", "-z", "n", "-f", "d2n", "-o", str(out), str(folder)]
    subprocess.run(command, check=True, capture_output=True)


def run_simpleitk(folder: Path, out: Path) -> None:
    """SimpleITK's GDCM series reader on the folder's first series, then WriteImage."""
    import SimpleITK

    SimpleITK.ProcessObject_SetGlobalWarningDisplay(False)
    reader = SimpleITK.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(folder))
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), ids[0]))
    SimpleITK.WriteImage(reader.Execute(), str(out / "sitk.nii"))


def measure(folder: Path, repeats: int) -> dict[str, Any]:
    """Median wall and CPU seconds of each tool on one series."""
    from medverse.io.dicom import describe_folder

    series = describe_folder(folder).series[0]
    runs: dict[str, list[tuple[float, float]]] = {}
    tools: list[tuple[str, Callable[[Path], None], bool]] = [
        ("medverse", lambda o: run_medverse(folder, o, cold=True), False),
        ("medverse_warm_index", lambda o: run_medverse(folder, o, cold=False), False),
        ("dcm2niix", lambda o: run_dcm2niix(folder, o), True),
        ("simpleitk", lambda o: run_simpleitk(folder, o), False),
    ]
    for repeat in range(repeats):
        order = tools[repeat % len(tools) :] + tools[: repeat % len(tools)]
        for name, tool, children in order:
            with tempfile.TemporaryDirectory() as tmp:
                timing = _timed(functools.partial(tool, Path(tmp)), children)
                runs.setdefault(name, []).append(timing)
    result: dict[str, Any] = {"series": folder.name, "files": len(series.files)}
    result["slices"] = series.slices
    for name, values in runs.items():
        result[name] = {
            "wall_s": statistics.median(v[0] for v in values),
            "cpu_s": statistics.median(v[1] for v in values),
        }
    return result


def main() -> None:
    """Measure, print a table, write the JSON, end with the two ratio lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("dcm2niix") is None:
        sys.exit("dcm2niix not found (Debian package dcm2niix)")
    info = machine()
    print(
        f"CPU {info['cpu']} ({info['cpu_count']} threads), ISA "
        + ", ".join(k for k, v in info["isa"].items() if v)
        + f"; medverse decodes on {info['decode_threads']} threads (series of "
        + f"{info['threads_from_compressed_files']}+ compressed files); "
        + f"load {info['load_average']}"
    )
    rows = []
    for folder in series_folders():
        row = measure(folder, args.repeats)
        rows.append(row)
        print(
            f"{row['series']:<28} {row['slices']:>4} slices  "
            + "  ".join(
                f"{name} {row[name]['cpu_s'] * 1000:7.1f} ms cpu "
                f"{row[name]['wall_s'] * 1000:7.1f} ms wall"
                for name in ("medverse", "medverse_warm_index", "dcm2niix", "simpleitk")
            ),
            flush=True,
        )
    totals = {
        name: {k: sum(r[name][k] for r in rows) for k in ("cpu_s", "wall_s")}
        for name in ("medverse", "medverse_warm_index", "dcm2niix", "simpleitk")
    }
    slices = sum(r["slices"] for r in rows)
    for name, total in totals.items():
        print(
            f"{name:<20} {total['cpu_s'] / len(rows):.4f} s cpu per series "
            f"({total['wall_s'] / len(rows):.4f} s wall), "
            f"{slices / total['cpu_s']:.0f} slices/s cpu"
        )
    ratio_d = totals["medverse"]["cpu_s"] / totals["dcm2niix"]["cpu_s"]
    ratio_s = totals["medverse"]["cpu_s"] / totals["simpleitk"]["cpu_s"]
    stamp = datetime.now(UTC)
    target = args.json or RESULTS / f"bench_dicom-cpu-{stamp:%Y%m%d}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        json.dumps(
            {
                "date": stamp.isoformat(),
                "machine": info,
                "load_average_at_end": os.getloadavg(),
                "repeats": args.repeats,
                "measure": "median per series; ratios of summed process CPU seconds",
                "series": rows,
                "totals": totals,
                "time_ratio_medverse_over_dcm2niix": ratio_d,
                "time_ratio_medverse_over_simpleitk": ratio_s,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"load average at the start {info['load_average']}, at the end {os.getloadavg()}")
    print(f"results in {target}")
    print(f"time_ratio_medverse_over_dcm2niix: {ratio_d:.3f}")
    print(f"time_ratio_medverse_over_simpleitk: {ratio_s:.3f}")


if __name__ == "__main__":
    main()
