"""The two pipelines the inference benchmark races, each from a file path to a written label file.

(a) ``MonaiReference``: the brief's liver example written plainly with MONAI:
LoadImaged -> EnsureChannelFirstd -> Spacingd(1.5, 1.5, 2.0) -> ScaleIntensityRanged(-175, 250,
0, 1) -> UNet under ``sliding_window_inference`` (96^3 windows, sw_batch_size 4, MONAI's
defaults otherwise: overlap 0.25, constant blending) -> argmax -> SaveImage. As in the brief,
the labels are saved on the 1.5 x 1.5 x 2 mm grid (it does not map them back to the input
grid, which is less work than medverse does). DICOM folders are read with MONAI's
PydicomReader (its default ITK reader needs ``itk``, which is not installed).

(b) ``MedversePipeline``: read_image -> Predictor.predict (labels on the input's own grid)
-> write_nifti.

Both use the same network weights (one medverse checkpoint) and the same threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medverse.inference.predictor import Predictor
from medverse.io.dicom import read_image
from medverse.io.nifti import write_nifti
from medverse.models.checkpoint import load_checkpoint

PIXDIM = (1.5, 1.5, 2.0)
ROI = (96, 96, 96)
SW_BATCH = 4


@dataclass
class RunResult:
    """One pipeline on one study: the written labels file and the time of each step."""

    output: Path
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """End-to-end seconds."""
        return sum(self.seconds.values())


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now


class MonaiReference:
    """The brief's MONAI pipeline (see the module docstring).

    Args:
        checkpoint: The medverse checkpoint whose weights the brief's UNet loads.
        device: ``cpu`` or ``cuda``.
    """

    name = "monai_reference"

    def __init__(self, checkpoint: Path, device: str) -> None:
        from monai.networks.nets import UNet

        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.device = torch.device(device)
        self.network = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=int(payload["out_channels"]),
            channels=(16, 32, 64, 128, 256),
            strides=(2, 2, 2, 2),
            num_res_units=2,
        ).to(self.device)
        self.network.load_state_dict(payload["state_dict"])
        self.network.eval()

    def settings(self) -> dict[str, str]:
        """What the reference runs with."""
        return {
            "device": str(self.device),
            "precision": "fp32",
            "overlap": "0.25",
            "blend": "constant",
            "sw_batch_size": str(SW_BATCH),
            "output_grid": "1.5x1.5x2 mm (Spacingd output, as in the brief)",
        }

    def __call__(self, source: Path, out_dir: Path) -> RunResult:
        """Segment one study and save its labels under ``out_dir``."""
        from monai.inferers import sliding_window_inference
        from monai.transforms import (
            EnsureChannelFirstd,
            LoadImaged,
            SaveImage,
            ScaleIntensityRanged,
            Spacingd,
        )

        timer = _Timer()
        reader = "PydicomReader" if source.is_dir() else None
        data = LoadImaged(keys=["image"], reader=reader)({"image": str(source)})
        data = EnsureChannelFirstd(keys=["image"])(data)
        timer.lap("load")
        data = Spacingd(keys=["image"], pixdim=PIXDIM, mode="bilinear")(data)
        data = ScaleIntensityRanged(keys=["image"], a_min=-175, a_max=250, b_min=0.0, b_max=1.0)(
            data
        )
        timer.lap("preprocess")
        image = data["image"][None].to(self.device)
        with torch.no_grad():
            logits = sliding_window_inference(image, ROI, SW_BATCH, self.network, overlap=0.25)
            seg = torch.argmax(logits, dim=1)
        _sync(self.device)
        timer.lap("sliding_window")
        saver = SaveImage(
            output_dir=str(out_dir),
            output_postfix="seg",
            separate_folder=False,
            output_dtype=np.uint8,
            print_log=False,
        )
        saver(seg.cpu())
        timer.lap("save")
        written = sorted(out_dir.glob("*_seg.nii*"))
        return RunResult(written[-1], timer.seconds)


class MedversePipeline:
    """read_image -> Predictor.predict -> write_nifti, with the Predictor's options.

    Args:
        checkpoint: The checkpoint.
        name: Label for the results.
        options: Keyword arguments of `Predictor` (device, backend, precision, ...).
    """

    def __init__(self, checkpoint: Path, name: str, **options: Any) -> None:
        self.name = name
        self.predictor = Predictor(load_checkpoint(checkpoint), **options)

    def settings(self) -> dict[str, str]:
        """What this configuration runs with."""
        return {**self.predictor.describe(), "output_grid": "the input's own grid"}

    def __call__(self, source: Path, out_dir: Path) -> RunResult:
        """Segment one study and write ``labels.nii.gz`` under ``out_dir``."""
        timer = _Timer()
        volume = read_image(source)
        timer.lap("load")
        labels = self.predictor.predict(volume)
        _sync(self.predictor.device)
        timer.lap("predict")
        path = write_nifti(labels, out_dir / "labels.nii.gz")
        timer.lap("save")
        return RunResult(path, timer.seconds)


def calibrate_int8(predictor: Predictor, study: Path) -> str:
    """Run ``predictor`` on ``study`` until its int8 network is calibrated and checked.

    Untimed, once per weights (the verdict and the int8 network are cached beside the ONNX
    export, as ``medverse segment --precision int8`` makes them on its first run). Returns
    the backend's one-line description (int8 kept, or float32 and why); a predictor that
    did not ask for int8 is left alone.
    """
    backend = predictor.backend
    if not hasattr(backend, "describe_int8") or not backend.describe_int8():
        return str(getattr(backend, "name", ""))
    volume = read_image(study)
    for _ in range(3):  # a small study may hold fewer windows than calibration needs
        if backend.verdict is not None:
            break
        predictor.predict(volume)
    return str(backend.describe())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
