"""Fine-tune the demo CT UNet on thin slabs, so that a 20-slice series is not all padding to it.

The benchmark fit (`bench_inference_data.fitted_checkpoint`) only ever shows the network whole
96^3 crops of one abdomen. A short series (the demo CT: 20 slices of 2 mm) is centred in a
96-slice window with zeros above and below, which the network never saw, and it then finds
nothing, not even on a slab of its own training case. This phase mixes such slabs (10 to 40
slices, zero-padded in z exactly as the window engine pads) with whole 96^3 crops.

Run: .venv/bin/python benchmarks/fit_ct_demo_slabs.py [--steps 240] [--out models/x.pt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_inference_data import CLASSES, ROI, _plain, _training_case, whole_case_dice

from medverse.models.factory import build_network

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "ct_demo_4organ_unet.pt"
SEED = 1


def _crops(case: dict[str, Any], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One zero-padded slab and one whole window, each centred on a random organ voxel."""
    image, label = _plain(case["image"]).float(), _plain(case["label"]).long()
    images, labels = [], []
    for thickness in (int(rng.integers(10, 41)), ROI[2]):
        cls = int(rng.integers(1, len(CLASSES) + 1))
        where = torch.nonzero(label[0] == cls)
        centre = where[int(rng.integers(len(where)))].tolist()
        box = []
        for axis, size in enumerate((ROI[0], ROI[1], thickness)):
            extent = image.shape[axis + 1]
            start = min(max(0, centre[axis] - size // 2), max(0, extent - size))
            box.append(slice(start, start + size))
        img, lab = image[(slice(None), *box)], label[(slice(None), *box)]
        pads = [(ROI[a] - img.shape[a + 1]) for a in range(3)]
        spec = [p for a in (2, 1, 0) for p in (pads[a] // 2, pads[a] - pads[a] // 2)]
        images.append(torch.nn.functional.pad(img, spec, value=0.0))
        labels.append(torch.nn.functional.pad(lab, spec, value=0))
    return torch.stack(images), torch.stack(labels).float()


def _slab_dice(network: torch.nn.Module, case: dict[str, Any], slices: int) -> dict[str, float]:
    """Dice per class on a centred slab of the training case, padded as the engine pads."""
    image, label = _plain(case["image"]).float(), _plain(case["label"]).long()
    z0 = (image.shape[3] - slices) // 2
    slab = {"image": image[..., z0 : z0 + slices], "label": label[..., z0 : z0 + slices]}
    return whole_case_dice(network, slab)


def main() -> None:
    """Fine-tune, report Dice on the whole case and on a 20-slice slab, save the checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--out", type=Path, default=MODEL)
    args = parser.parse_args()
    payload = torch.load(MODEL, weights_only=True)
    network = build_network("unet_brief", 1, len(CLASSES) + 1)
    network.load_state_dict(payload["state_dict"])
    case = _training_case()
    print("before: whole", whole_case_dice(network, case), "slab20", _slab_dice(network, case, 20))
    from monai.losses import DiceCELoss

    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    optimizer = torch.optim.Adam(network.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps, args.lr / 10)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    network.train()
    start, recent = time.perf_counter(), []
    for step in range(args.steps):
        image, label = _crops(case, rng)
        optimizer.zero_grad()
        loss = loss_fn(network(image), label)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = [*recent[-19:], float(loss.detach())]
        if (step + 1) % 20 == 0:
            print(f"  step {step + 1}/{args.steps}: loss {np.mean(recent):.3f}", flush=True)
    network.eval()
    whole, slab = whole_case_dice(network, case), _slab_dice(network, case, 20)
    print(f"after {time.perf_counter() - start:.0f} s: whole {whole} slab20 {slab}")
    payload["state_dict"] = {k: v.detach().clone() for k, v in network.state_dict().items()}
    extra = dict(payload.get("extra", {}))
    extra["phases"] = [
        *extra.get("phases", []),
        f"slab fine-tune: {args.steps} steps, lr {args.lr} cosine, seed {SEED}, "
        "1 slab of 10-40 slices zero-padded to 96 + 1 whole 96^3 crop per step",
    ]
    extra["train_case_dice"], extra["train_case_slab20_dice"] = whole, slab
    payload["extra"] = extra
    torch.save(payload, args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
