"""Inputs of the inference benchmark: fitted weights and the study volumes, built once, cached.

Weights: the brief's UNet (channels 16-256, strides 2, 2 residual units) fitted for a bounded
number of steps on the real labelled TotalSegmentator example CT (liver, spleen, kidneys and
aorta as 4 classes), with the brief's preprocessing (Spacingd 1.5 x 1.5 x 2.0 mm,
ScaleIntensityRanged -175..250 -> 0..1, 96^3 crops), so both pipelines segment real organs.

Volumes: a CT-sized 512 x 512 x 300 NIfTI (0.8 x 0.8 x 1.0 mm) made from the example CT
(linear upsampling, air outside its field of view, seeded scanner-like noise), plus the real
samples as they are (the 3 mm example CT, the 20-slice DICOM series, the aorta crop).

Everything lives in ``benchmarks/.cache/inference`` (git-ignored by its own .gitignore).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medverse.io.nifti import read_nifti
from medverse.models.checkpoint import save_checkpoint
from medverse.models.factory import build_network
from medverse.preprocessing.plan import Plan
from medverse.preprocessing.resample import resample_tensor
from medverse.preprocessing.taps import axis_map

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXAMPLE_CT = DATA / "totalsegmentator_example_ct" / "example_ct.nii.gz"
EXAMPLE_SEG = DATA / "totalsegmentator_example_ct" / "example_seg_fast_force_split.nii.gz"
AORTA_CT = DATA / "totalsegmentator_example_ct" / "aorta_crop" / "ct_cropped.nii.gz"
DICOM_CT = DATA / "dicom_ct_series_totalsegmentator" / "dicom"
CACHE = REPO / "benchmarks" / ".cache" / "inference"

PIXDIM = (1.5, 1.5, 2.0)
A_MIN, A_MAX = -175.0, 250.0
ROI = (96, 96, 96)
# TotalSegmentator ids -> our classes: liver, spleen, kidneys (right + left), aorta.
CLASSES = {1: ("liver", (5,)), 2: ("spleen", (1,)), 3: ("kidney", (2, 3)), 4: ("aorta", (52,))}
FIT_SEED = 0


@dataclass(frozen=True)
class Phase:
    """One fitting phase: steps of 2 random crops with Adam."""

    steps: int
    balanced: bool  # crops centred on each class in turn, else 2 in 3 on any organ
    lr: float
    crop: int  # cube side; 64 is cheap, 96 is the inference window
    cosine: bool = False  # decay the rate to a tenth over the phase


PHASES = (
    Phase(400, False, 3e-3, 64),
    Phase(300, True, 1e-3, 64),
    Phase(300, True, 1e-3, 96, cosine=True),
)
CT512_SHAPE = (512, 512, 300)
CT512_SPACING = (0.8, 0.8, 1.0)


@dataclass(frozen=True)
class Study:
    """One benchmark input: a name, a path both pipelines read, and what it is."""

    name: str
    path: Path
    description: str


def cache_dir() -> Path:
    """The cache folder, created with a .gitignore that ignores everything in it."""
    CACHE.mkdir(parents=True, exist_ok=True)
    ignore = CACHE.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return CACHE


def brief_plan() -> Plan:
    """The brief's preprocessing as a medverse plan.

    ScaleIntensityRanged(-175, 250, 0, 1) without clipping is ``(x + 175) / 425``: a
    ``ct_window`` with mean -175, std 425 and clip bounds no CT value reaches.
    """
    return Plan(
        modality="CT",
        target_spacing=PIXDIM,
        patch_size=ROI,
        normalization="ct_window",
        clip_low=-1.0e6,
        clip_high=1.0e6,
        mean=A_MIN,
        std=A_MAX - A_MIN,
        labels={value: name for value, (name, _) in CLASSES.items()},
        preset="unet_brief",
    )


MODELS = REPO / "models"


def shipped_checkpoint() -> Path | None:
    """The fitted brief UNet as the repository ships it under models/ (None if it does not).

    It is the last phase of `fitted_checkpoint` (preset ``unet_brief``, the same 4 classes),
    so a fresh clone times and checks agreement without fitting for an hour first.
    """
    for path in sorted(MODELS.glob("*.pt")):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # not a torch file we can read safely: not ours
            continue
        brief = isinstance(payload, dict) and payload.get("preset") == "unet_brief"
        if brief and int(payload.get("out_channels", 0)) == len(CLASSES) + 1:
            return path
    return None


def random_checkpoint() -> Path:
    """The brief UNet with fixed-seed random weights (timing only: no agreement claim)."""
    path = cache_dir() / f"unet_brief_random_seed{FIT_SEED}.pt"
    if not path.exists():
        torch.manual_seed(FIT_SEED)
        network = build_network("unet_brief", 1, len(CLASSES) + 1)
        plan = brief_plan()
        save_checkpoint(path, network, plan, preset="unet_brief", labels=plan.labels)
    return path


def fitted_checkpoint(log: Callable[[str], None] = print) -> Path:
    """The fitted brief UNet as a medverse checkpoint (fitted on first use, then cached).

    `PHASES` run one after the other, each cached: 64^3 crops centred on any organ (2 in 3)
    or anywhere; then crops centred on each class in turn (spleen, kidneys and aorta are seen
    as often as liver), first 64^3, then 96^3 (the inference window, whose instance-norm
    statistics the network then knows).
    """
    names = [f"{p.steps}{'b' if p.balanced else ''}{p.crop}" for p in PHASES]
    paths = [cache_dir() / f"unet_brief_{'+'.join(names[: i + 1])}_seed{FIT_SEED}.pt"
             for i in range(len(PHASES))]  # fmt: skip
    if paths[-1].exists():
        return paths[-1]
    plan = brief_plan()
    case = _training_case()
    torch.manual_seed(FIT_SEED)
    network = build_network("unet_brief", 1, len(CLASSES) + 1)
    done = max((i for i, path in enumerate(paths) if path.exists()), default=-1)
    if done >= 0:
        network.load_state_dict(torch.load(paths[done], weights_only=True)["state_dict"])
    for index in range(done + 1, len(PHASES)):
        phase = PHASES[index]
        log(f"fitting the brief's UNet, phase {index + 1}/{len(PHASES)}: {phase} (cached)")
        start = time.perf_counter()
        _fit(network, case, phase, seed=FIT_SEED + index, log=log)
        dice = whole_case_dice(network, case)
        log(f"  {time.perf_counter() - start:.0f} s; training-case Dice {dice}")
        extra = {"phases": [str(p) for p in PHASES[: index + 1]], "train_case_dice": dice}
        save_checkpoint(
            paths[index], network, plan, preset="unet_brief", labels=plan.labels, extra=extra
        )
    return paths[-1]


def _training_case() -> dict[str, torch.Tensor]:
    """The example CT and its merged labels through the brief's deterministic transforms."""
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        ScaleIntensityRanged,
        Spacingd,
    )

    seg = nib.load(str(EXAMPLE_SEG))
    merged = np.zeros(seg.shape, dtype=np.uint8)
    source = np.asarray(seg.dataobj)
    for value, (_, ids) in CLASSES.items():
        merged[np.isin(source, ids)] = value
    label_path = cache_dir() / "example_seg_4classes.nii.gz"
    nib.save(nib.Nifti1Image(merged, seg.affine), str(label_path))
    chain = Compose(
        [
            LoadImaged(keys=["image", "label"]),
            EnsureChannelFirstd(keys=["image", "label"]),
            Spacingd(keys=["image", "label"], pixdim=PIXDIM, mode=("bilinear", "nearest")),
            ScaleIntensityRanged(keys=["image"], a_min=A_MIN, a_max=A_MAX, b_min=0.0, b_max=1.0),
        ]
    )
    return chain({"image": str(EXAMPLE_CT), "label": str(label_path)})


def _fit(
    network: torch.nn.Module,
    case: dict[str, torch.Tensor],
    phase: Phase,
    *,
    seed: int,
    log: Callable[[str], None],
) -> None:
    """Adam + DiceCE on 2 random crops per step, in place, under bf16 autocast where native."""
    from monai.losses import DiceCELoss
    from monai.transforms import RandCropByLabelClassesd, RandCropByPosNegLabeld

    torch.manual_seed(seed)
    keys, size = ["image", "label"], (phase.crop,) * 3
    crop: Any
    if phase.balanced:
        crop = RandCropByLabelClassesd(
            keys=keys,
            label_key="label",
            spatial_size=size,
            ratios=[1.0] * (len(CLASSES) + 1),
            num_classes=len(CLASSES) + 1,
            num_samples=2,
        )
    else:
        crop = RandCropByPosNegLabeld(
            keys=keys, label_key="label", spatial_size=size, pos=2, neg=1, num_samples=2
        )
    crop.set_random_state(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=phase.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, phase.steps, phase.lr / 10)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    fast = bool(torch.cpu.get_capabilities().get("avx512_bf16", False))
    network.train()
    recent: list[float] = []
    for step in range(phase.steps):
        samples = crop(case)
        image = torch.stack([_plain(s["image"]) for s in samples]).float()
        label = torch.stack([_plain(s["label"]) for s in samples]).float()
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            logits = network(image)
        loss = loss_fn(logits.float(), label)
        loss.backward()
        optimizer.step()
        if phase.cosine:
            schedule.step()
        recent = [*recent[-19:], float(loss.detach())]
        if (step + 1) % 20 == 0:
            log(f"  step {step + 1}/{phase.steps}: loss {np.mean(recent):.3f}")
    network.eval()


def _plain(x: object) -> torch.Tensor:
    """A plain tensor (MONAI's MetaTensor tracks metadata the training step does not need)."""
    tensor = torch.as_tensor(x)
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


@torch.inference_mode()
def whole_case_dice(network: torch.nn.Module, case: dict[str, torch.Tensor]) -> dict[str, float]:
    """Dice per class on the whole training case (sliding window as in the reference)."""
    from monai.inferers import sliding_window_inference

    image = _plain(case["image"])[None].float()
    label = _plain(case["label"])[0].long()
    logits = sliding_window_inference(image, ROI, 4, network.eval(), overlap=0.25)
    pred = torch.as_tensor(logits).argmax(1)[0]
    scores = {}
    for value, (name, _) in CLASSES.items():
        a, b = pred == value, label == value
        scores[name] = round(2.0 * int((a & b).sum()) / max(1, int(a.sum()) + int(b.sum())), 4)
    return scores


def ct512_volume() -> Path:
    """The CT-sized study: the example CT on a 512 x 512 x 300 grid at 0.8 x 0.8 x 1.0 mm."""
    path = cache_dir() / "ct_512x512x300.nii.gz"
    if path.exists():
        return path
    source = read_nifti(EXAMPLE_CT)
    affine = _centred_affine(source.affine, source.shape, CT512_SHAPE, CT512_SPACING)
    mapping = axis_map(source.affine, affine)
    assert mapping is not None
    raw = torch.from_numpy(np.asarray(source.array, dtype=np.float32))
    hu = resample_tensor(raw, source.affine, affine, CT512_SHAPE, order=1, padding="border").numpy()
    hu[~_inside(mapping, source.shape, CT512_SHAPE)] = -1024.0
    rng = np.random.default_rng(FIT_SEED)
    hu += rng.normal(0.0, 12.0, size=hu.shape).astype(np.float32)
    array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    image = nib.Nifti1Image(array, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, str(path))
    return path


def _centred_affine(
    affine: np.ndarray,
    shape: tuple[int, ...],
    new_shape: tuple[int, ...],
    spacing: tuple[float, ...],
) -> np.ndarray:
    old = np.linalg.norm(affine[:3, :3], axis=0)
    out = np.eye(4)
    out[:3, :3] = affine[:3, :3] * (np.asarray(spacing) / old)
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    out[:3, 3] = centre - out[:3, :3] @ ((np.asarray(new_shape) - 1) / 2)
    return out


def _inside(mapping: object, source_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """True where a target voxel's centre lies within the source's field of view."""
    masks = []
    for axis in range(3):
        index = np.arange(shape[axis])
        coord = index * mapping.scale[axis] + mapping.offset[axis]  # type: ignore[attr-defined]
        masks.append((coord >= -0.5) & (coord <= source_shape[axis] - 0.5))
    return masks[0][:, None, None] & masks[1][None, :, None] & masks[2][None, None, :]


def studies(quick: bool) -> list[Study]:
    """The inputs: the CT-sized volume and the real samples (the first two with ``quick``)."""
    chosen = [
        Study("ct_512x512x300", ct512_volume(), "example CT on a 512x512x300 0.8x0.8x1 mm grid"),
        Study("example_ct_3mm", EXAMPLE_CT, "real TotalSegmentator example CT, 122x101x112, 3 mm"),
    ]
    if not quick:
        chosen.append(Study("dicom_ct_20", DICOM_CT, "real DICOM CT series, 512x512x20, JPEG 2000"))
        chosen.append(Study("aorta_crop", AORTA_CT, "real contrast CT crop, 120x126x164, 1.5 mm"))
    return chosen


WARMUP_SHAPE = (48, 48, 48)


def warmup_volume() -> Study:
    """A 48^3 crop of the example CT (one 96^3 window at 1.5 mm): warms each pipeline up."""
    path = cache_dir() / "warmup_48.nii.gz"
    if not path.exists():
        image = nib.load(str(EXAMPLE_CT))
        centre = [s // 2 for s in image.shape[:3]]
        box = tuple(slice(c - n // 2, c - n // 2 + n) for c, n in zip(centre, WARMUP_SHAPE))
        nib.save(image.slicer[box], str(path))
    return Study("warmup", path, "48^3 crop of the example CT (warm-up, untimed)")


def describe_inputs(items: list[Study]) -> list[dict[str, str]]:
    """The studies as JSON-ready records."""
    return [{"name": s.name, "path": str(s.path), "description": s.description} for s in items]


if __name__ == "__main__":
    print(fitted_checkpoint())
    print(json.dumps(describe_inputs(studies(quick=False)), indent=1))
