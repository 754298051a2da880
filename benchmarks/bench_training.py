"""Training benchmark: medverse's recipe against the brief's liver recipe, same machine and budget.

Both recipes train on the MSD Task04 hippocampus data with the same split
(``make_split`` seed 0, fold 0), each in its own subprocess, one after the other, with the same
thread count. Every ``--eval-every-s`` seconds of *training* time (validation is not counted)
each is scored the same way: mean Dice of labels 1 and 2 over the validation cases, predicted
by a Gaussian sliding window (overlap 0.5) and compared on the native grid.

- medverse: what ``medverse train`` does by default (DynUNet plan from the data's fingerprint,
  Dice+CE, AdamW 3e-4, batch 2, a third of the patches on foreground, flips/rotation/scaling/
  intensity augmentation, poly LR). The poly horizon is the number of steps that fit in the
  budget (re-estimated at each validation), as a user would pick ``--epochs`` for the time.
- brief: the liver recipe of ../shared/brief/2-gpu-server-imaging-ai-monai.txt in plain MONAI:
  LoadImaged, EnsureChannelFirstd, Spacingd (the data's 1 mm), ScaleIntensityd (min-max: the MR
  stand-in for a CT window), SpatialPadd + RandCropByPosNegLabeld to 96^3, CacheDataset,
  batch 2, UNet 16-256 strides 2 num_res_units 2, DiceLoss(to_onehot_y, softmax), Adam 1e-4,
  float32 as written. One crop per case (``num_samples=4`` would only repeat the whole padded
  volume four times: these volumes are smaller than 96^3).

Usage: ``python benchmarks/bench_training.py [--budget-min M] [--quick] [--json OUT]``; the last
line printed is ``time_to_0.85_ratio_brief_over_medverse: X.XX`` (or ``n/a`` with the reason).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

TARGET = 0.85
LABELS = (1, 2)
RECIPES = ("medverse", "brief")
HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "msd_task04_hippocampus"
RESULTS = HERE / "results"
BRIEF_ROI = (96, 96, 96)
OVERLAP = 0.5
DESCRIPTIONS = {
    "medverse": "medverse train defaults: DynUNet plan, Dice+CE, AdamW 3e-4, batch 2, 1/3 "
    "foreground patches, augmentation, poly LR over the budget, AMP on CUDA",
    "brief": "the brief's liver recipe: UNet 16-256 strides 2 num_res_units 2, DiceLoss, "
    "Adam 1e-4, 96^3 pad+crop, batch 2, CacheDataset, ScaleIntensityd, float32",
}


@dataclass(frozen=True)
class Spec:
    """What both recipe subprocesses are told (written as JSON for them)."""

    data: str
    budget_s: float
    eval_every_s: float
    threads: int
    device: str
    max_train: int | None = None
    max_val: int | None = None
    seed: int = 0
    fold: int = 0


class Recipe(Protocol):
    """A recipe set up and ready: one optimiser step at a time, predictions on demand."""

    def step(self) -> None:
        """One optimiser step, fetching its batch."""

    def predict(self, index: int) -> Any:
        """Labels of validation case ``index`` on its native grid."""

    def on_progress(self, steps: int, train_s: float, budget_s: float) -> None:
        """Told the steps done and training seconds spent so far."""


# ---- recipes (built inside the worker subprocess) -------------------------------------------
def load_cases(spec: Spec) -> tuple[Any, list[Any], list[Any]]:
    """The dataset index and the train / validation entries of ``make_split`` seed, fold."""
    from medverse.preprocessing.msd import read_msd_index
    from medverse.training.split import make_split

    index = read_msd_index(spec.data)
    split = make_split([e.name for e in index.entries], seed=spec.seed, fold=spec.fold)
    by_name = {e.name: e for e in index.entries}
    train = [by_name[n] for n in split.train][: spec.max_train]
    val = [by_name[n] for n in split.validation][: spec.max_val]
    return index, train, val


class MedverseRecipe:
    """``medverse train`` defaults, driven one step at a time through its Trainer."""

    def __init__(self, spec: Spec, index: Any, train: list[Any], val: list[Any]) -> None:
        from medverse.parallel.ddp import init_distributed, unwrap_model
        from medverse.preprocessing.fingerprint import compute_fingerprint
        from medverse.preprocessing.msd import MsdDataset, load_msd_case
        from medverse.preprocessing.plan import make_plan
        from medverse.training.api import build_trainer
        from medverse.training.config import TrainConfig
        from medverse.training.setup import DEFAULT_PRESET, RunSetup
        from medverse.training.split import Split

        cases = [load_msd_case(e, index.labels) for e in train + val]
        dataset = MsdDataset(index.root, cases, index.labels, index.modality)
        pairs = ((c.image, c.label) for c in cases)  # as `medverse train`: every case
        fingerprint = compute_fingerprint(pairs, index.modality, labels=index.labels)
        self.plan = make_plan(fingerprint, preset=DEFAULT_PRESET)
        config = TrainConfig(device=spec.device, progress=False, seed=spec.seed, fold=spec.fold)
        names = [tuple(e.name for e in group) for group in (train, val)]
        split = Split(names[0], names[1], spec.seed, spec.fold, config.n_folds)
        run_dir = Path(tempfile.mkdtemp(prefix="bench-medverse-"))  # nothing is written there
        setup = RunSetup(Path(spec.data), run_dir, config, self.plan, split, resumed=False)
        self.trainer = build_trainer(setup, dataset, init_distributed(spec.device))
        self.network = unwrap_model(self.trainer.parts.network)
        self.val = cases[len(train) :]
        self.batches = self._batches()

    def _batches(self) -> Iterator[dict[str, Any]]:
        for epoch in itertools.count(1):
            self.trainer.on_epoch_start(epoch)
            yield from self.trainer.parts.loader

    def step(self) -> None:
        """One `Trainer.train_step` (AMP and the poly schedule included)."""
        batch = next(self.batches)
        self.trainer.parts.network.train()
        self.trainer.train_step(batch)

    def predict(self, index: int) -> Any:
        """The validation path of `medverse evaluate` (plan grid, windows, native grid)."""
        from medverse.training.inferer import predict_volume

        case = self.val[index]
        precision = self.trainer.parts.precision
        return predict_volume(self.network, case.image, self.plan, precision, OVERLAP).array

    def on_progress(self, steps: int, train_s: float, budget_s: float) -> None:
        """Set the poly horizon to the steps that fit in the budget at the speed seen so far."""
        remaining = max(budget_s - train_s, 0.0) / (train_s / steps)
        scheduler = self.trainer.parts.scheduler
        scheduler.total_iters = max(steps + 1, int(steps + remaining))  # type: ignore[attr-defined]


class BriefRecipe:
    """The brief's liver recipe in plain MONAI, on the hippocampus MR crops."""

    def __init__(self, spec: Spec, index: Any, train: list[Any], val: list[Any]) -> None:
        import torch
        from monai.data import CacheDataset, DataLoader
        from monai.losses import DiceLoss
        from monai.networks.nets import UNet
        from monai.transforms import Compose, EnsureTyped, RandCropByPosNegLabeld, SpatialPadd
        from monai.utils import set_determinism

        from medverse.parallel.ddp import select_device

        set_determinism(seed=spec.seed)
        self.device = select_device(spec.device)
        keys = ["image", "label"]
        crop = RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=BRIEF_ROI, pos=1, neg=1, num_samples=1
        )
        pad = SpatialPadd(keys=keys, spatial_size=BRIEF_ROI)
        chain = Compose([*_brief_head(keys), pad, crop, EnsureTyped(keys=keys)])
        files = [{"image": str(e.image_path), "label": str(e.label_path)} for e in train]
        dataset = CacheDataset(data=files, transform=chain, cache_rate=1.0, progress=False)
        workers = 0 if self.device.type == "cpu" else 4
        self.loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=workers)
        head = Compose(_brief_head(["image"]))
        self.val = [head({"image": str(e.image_path)})["image"] for e in val]
        self.native = [_native_grid(e.label_path) for e in val]
        self.model = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=len(LABELS) + 1,
            channels=(16, 32, 64, 128, 256),
            strides=(2, 2, 2, 2),
            num_res_units=2,
        ).to(self.device)
        self.loss = DiceLoss(to_onehot_y=True, softmax=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.batches = (b for _ in itertools.count() for b in self.loader)

    def step(self) -> None:
        """The brief's loop body."""
        batch = next(self.batches)
        inputs, labels = batch["image"].to(self.device), batch["label"].to(self.device)
        self.model.train()
        self.optimizer.zero_grad()
        loss = self.loss(self.model(inputs), labels)
        loss.backward()
        self.optimizer.step()

    def predict(self, index: int) -> Any:
        """Sliding window (96^3 roi) on its preprocessed grid, then onto the native grid."""
        import numpy as np
        import torch
        from monai.inferers import sliding_window_inference

        from medverse.core.volume import LabelMap
        from medverse.preprocessing.resample import resample_to_grid

        image = self.val[index]
        self.model.eval()
        with torch.inference_mode():
            logits = sliding_window_inference(
                image[None].to(self.device), BRIEF_ROI, 4, self.model, OVERLAP, mode="gaussian"
            )
        labels = torch.as_tensor(logits)[0].argmax(0).cpu().numpy().astype(np.uint8)
        affine, shape = self.native[index]
        grid = LabelMap(labels, np.asarray(image.affine, dtype=np.float64))
        return resample_to_grid(grid, affine, shape, order=0).array

    def on_progress(self, steps: int, train_s: float, budget_s: float) -> None:
        """Constant learning rate: nothing to adjust."""


def _brief_head(keys: list[str]) -> list[Any]:
    from monai.transforms import EnsureChannelFirstd, LoadImaged, ScaleIntensityd, Spacingd

    modes = ("bilinear", "nearest")[: len(keys)]
    return [
        LoadImaged(keys=keys),
        EnsureChannelFirstd(keys=keys),
        Spacingd(keys=keys, pixdim=(1.0, 1.0, 1.0), mode=modes),
        ScaleIntensityd(keys="image"),
    ]


def _native_grid(path: Path) -> tuple[Any, tuple[int, int, int]]:
    from medverse.io.nifti import read_nifti

    volume = read_nifti(path)
    return volume.affine, volume.shape


# ---- the worker: train for the budget, validate on a training-time clock --------------------
def validate(recipe: Recipe, references: Sequence[Any]) -> dict[str, Any]:
    """Mean Dice of LABELS over the validation cases (same function for both recipes)."""
    from medverse.training.metrics import case_scores, mean_dice, score_totals, totals_to_means

    scores = [
        case_scores(recipe.predict(n), ref, LABELS, (1.0, 1.0, 1.0), distances=False)
        for n, ref in enumerate(references)
    ]
    means = totals_to_means(score_totals(scores, LABELS), LABELS)
    per_label = {str(v): round(float(means[v]["dice_mean"] or 0.0), 4) for v in LABELS}
    return {"val_dice": round(mean_dice(means), 4), "val_dice_per_label": per_label}


def train_for_budget(recipe: Recipe, references: Sequence[Any], spec: Spec, name: str) -> dict:
    """Train until ``budget_s`` seconds of training; validate every ``eval_every_s`` of them."""
    import torch

    cuda = spec.device != "cpu" and torch.cuda.is_available()
    curve: list[dict[str, Any]] = []
    train_s, steps, next_eval, validation_s = 0.0, 0, spec.eval_every_s, 0.0
    while train_s < spec.budget_s:
        start = time.perf_counter()
        recipe.step()
        if cuda:
            torch.cuda.synchronize()
        train_s += time.perf_counter() - start
        steps += 1
        if steps == 10:
            recipe.on_progress(steps, train_s, spec.budget_s)
        if train_s >= next_eval or train_s >= spec.budget_s:
            tick = time.perf_counter()
            row = {"train_seconds": round(train_s, 2), "steps": steps}
            row.update(validate(recipe, references))
            validation_s += time.perf_counter() - tick
            curve.append(row)
            print(
                f"[{name}] {train_s:7.1f} s, {steps} steps: Dice {row['val_dice']:.4f}",
                file=sys.stderr,
                flush=True,
            )
            while next_eval <= train_s:
                next_eval += spec.eval_every_s
            recipe.on_progress(steps, train_s, spec.budget_s)
    return {
        "steps": steps,
        "train_seconds": round(train_s, 2),
        "validation_seconds": round(validation_s, 2),
        "curve": curve,
    }


def run_worker(name: str, spec: Spec, out: Path) -> int:
    """Set up one recipe, train it for the budget and write its result JSON."""
    import torch

    from medverse.io.nifti import read_nifti_labels

    torch.set_num_threads(spec.threads)
    index, train, val = load_cases(spec)
    start = time.perf_counter()
    recipe: Recipe = (MedverseRecipe if name == "medverse" else BriefRecipe)(
        spec, index, train, val
    )
    setup_s = time.perf_counter() - start
    references = [read_nifti_labels(e.label_path).array for e in val]
    result = train_for_budget(recipe, references, spec, name)
    result.update(recipe=name, description=DESCRIPTIONS[name], setup_seconds=round(setup_s, 2))
    result.update(n_train=len(train), n_val=len(val))
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


# ---- the parent: run both, compare, report ----------------------------------------------------
def time_to_target(curve: Sequence[dict[str, Any]], target: float = TARGET) -> float | None:
    """Training seconds at the first validation reaching ``target`` (None if none did)."""
    return next((row["train_seconds"] for row in curve if row["val_dice"] >= target), None)


def ratio_line(
    brief: float | None, ours: float | None, budget_s: float
) -> tuple[float | None, str]:
    """The ratio brief/medverse of the times to TARGET, and the line that reports it."""
    key = f"time_to_{TARGET:.2f}_ratio_brief_over_medverse"
    if brief is not None and ours is not None:
        ratio = brief / ours
        return ratio, f"{key}: {ratio:.2f}"
    within = f"{TARGET} in {budget_s:.0f} s of training"
    if ours is not None:
        return None, f"{key}: n/a (brief did not reach {within}; ratio > {budget_s / ours:.2f})"
    if brief is not None:
        return None, f"{key}: n/a (medverse did not reach {within}; ratio < {brief / budget_s:.2f})"
    return None, f"{key}: n/a (neither reached {within})"


def run_subprocess(name: str, spec: Spec, folder: Path) -> dict[str, Any]:
    """Run one recipe in a fresh interpreter with the benchmark's thread count."""
    spec_path, out = folder / "spec.json", folder / f"{name}.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    threads = str(spec.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--spec",
        str(spec_path),
        "--result",
        str(out),
    ]
    code = subprocess.run(command, env=env, check=False).returncode
    if code != 0 or not out.is_file():
        return {"recipe": name, "error": f"worker exited with {code}"}
    return json.loads(out.read_text())


def machine(spec: Spec) -> dict[str, Any]:
    """Where it ran."""
    import monai
    import torch

    gpu = (
        torch.cuda.get_device_name(0)
        if spec.device != "cpu" and torch.cuda.is_available()
        else None
    )
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": spec.threads,
        "device": "cuda" if gpu else "cpu",
        "gpu": gpu,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def report(spec: Spec, results: dict[str, dict[str, Any]], quick: bool) -> tuple[dict, list[str]]:
    """The JSON document and the printed lines (the ratio line last)."""
    lines = [
        f"{'recipe':<10}{'steps':>8}{'s/step':>9}{'Dice@budget':>13}{'best':>8}  time to {TARGET}"
    ]
    times: dict[str, float | None] = {}
    for name, result in results.items():
        if "error" in result:
            lines.append(f"{name:<10}failed: {result['error']}")
            times[name] = None
            continue
        curve = result["curve"]
        times[name] = result["time_to_target_s"] = time_to_target(curve)
        result["final_dice"] = curve[-1]["val_dice"] if curve else None
        result["best_dice"] = max((r["val_dice"] for r in curve), default=None)
        reached = f"{times[name]:.0f} s" if times[name] is not None else "not reached"
        per_step = result["train_seconds"] / max(result["steps"], 1)
        dice = f"{result['final_dice'] or 0:>13.4f}{result['best_dice'] or 0:>8.4f}"
        lines.append(f"{name:<10}{result['steps']:>8}{per_step:>9.3f}{dice}  {reached}")
    ratio, line = ratio_line(times.get("brief"), times.get("medverse"), spec.budget_s)
    doc = {
        "benchmark": "bench_training",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "target_dice": TARGET,
        "spec": asdict(spec),
        "machine": machine(spec),
        "recipes": results,
        "time_to_target_ratio_brief_over_medverse": ratio,
        "ratio_line": line,
    }
    return doc, [*lines, line]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--budget-min", type=float, default=30.0, help="training minutes per recipe (default 30)"
    )
    parser.add_argument(
        "--eval-every-s",
        type=float,
        default=None,
        help="training seconds between validations (default budget/20)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: 20 s each, 12 train / 4 validation cases"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="result file (default benchmarks/results/...)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 2, help="torch threads, both recipes"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--data", type=Path, default=DATA, help="MSD hippocampus folder")
    parser.add_argument("--worker", choices=RECIPES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_spec(args: argparse.Namespace) -> Spec:
    budget_s = 20.0 if args.quick else args.budget_min * 60.0
    every = args.eval_every_s or (budget_s / 2 if args.quick else budget_s / 20)
    sizes = (12, 4) if args.quick else (None, None)
    return Spec(str(args.data), budget_s, every, args.threads, args.device, *sizes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args.worker, Spec(**json.loads(args.spec.read_text())), args.result)
    spec = make_spec(args)
    load_at_start = round(os.getloadavg()[0], 2)
    print(
        f"bench_training: {spec.budget_s:.0f} s of training per recipe, validation every "
        f"{spec.eval_every_s:.0f} s of training (not counted), {spec.threads} threads",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        results = {name: run_subprocess(name, spec, Path(tmp)) for name in RECIPES}
    doc, lines = report(spec, results, args.quick)
    doc["machine"]["load_average_1m_at_start"] = load_at_start
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    kind = "quick-" if args.quick else ""
    path = args.json or RESULTS / f"bench_training-{kind}{doc['machine']['device']}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print("\n".join(lines[:-1]))
    print(f"wrote {path}")
    print(lines[-1])
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
