"""The demo job: the whole I/O path on the vendored sample CT (and the shipped model, if any)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medverse.core.errors import InputError
from medverse.core.registry import label_map
from medverse.core.volume import LabelMap, Volume
from medverse.io.dicom import read_series
from medverse.io.nifti import read_nifti_labels, write_nifti
from medverse.preprocessing.resample import resample_to_grid

CT_DICOM = Path("ct_abdomen") / "dicom"
CT_REFERENCE = Path("ct_abdomen") / "reference_labels.nii.gz"
HIPPOCAMPUS = Path("hippocampus")
SHIPPED_MODEL = Path("models") / "hippocampus_dynunet.pt"
# The demonstration CT model: fitted on one other patient, not validated (models/*.md card).
CT_DEMO_MODEL = Path("models") / "ct_demo_4organ_unet.pt"


@dataclass(frozen=True)
class DemoResult:
    """What the demo wrote.

    Attributes:
        ct_dir: Folder with the CT outputs (image, labels, SEG, meshes, report, overview).
        files: Every file written, in order.
        structures: Structure name -> volume in mL, for the CT.
        hippocampus_dice: Case -> structure -> Dice of the shipped hippocampus model.
        ct_model: The CT model that segmented the CT (None: its reference labels were used).
        ct_dice: Structure -> Dice of the CT model's output against the CT's reference labels.
    """

    ct_dir: Path
    files: list[Path] = field(default_factory=list)
    structures: dict[str, float] = field(default_factory=dict)
    hippocampus_dice: dict[str, dict[str, float]] = field(default_factory=dict)
    ct_model: Path | None = None
    ct_dice: dict[str, float] = field(default_factory=dict)


def default_examples_dir() -> Path:
    """Return the ``examples/`` folder of a source checkout."""
    return Path(__file__).resolve().parents[3] / "examples"


def reference_labels_on(image: Volume, reference_path: Path) -> LabelMap:
    """Put a reference label map onto the image's grid (nearest neighbour, via the affines).

    Args:
        image: The CT Volume whose grid the labels must match.
        reference_path: NIfTI label map with TotalSegmentator ``total`` values.
    """
    reference = read_nifti_labels(reference_path)
    moved = resample_to_grid(reference, image.affine, image.shape, order=0)
    array = np.asarray(moved.array).astype(np.uint8)
    names = label_map("totalseg_total")
    present = [int(v) for v in np.unique(array) if v != 0]
    return LabelMap(
        array=array,
        affine=image.affine,
        meta={"source": str(reference_path)},
        labels={v: names[v].name if v in names else f"label_{v}" for v in present},
    )


def run_demo(out_dir: Path, examples_dir: Path | None = None) -> DemoResult:
    """Run the demo: sample CT DICOM -> NIfTI, labels -> DICOM SEG, GLB meshes, report, overview.

    The CT is segmented by the shipped demonstration CT model (``models/ct_demo_4organ_unet.pt``:
    fitted on one other patient, not validated) and its labels scored against the CT's
    vendored reference label map; without that file the reference labels themselves are
    exported, so the demo still exercises every writer on real data.

    Args:
        out_dir: Where to write; ``<out_dir>/ct`` holds the CT outputs.
        examples_dir: The vendored sample data (default: ``examples/`` of the checkout).

    Raises:
        InputError: If the sample data is missing.
    """
    from medverse.inference.api import export_labels, segment

    examples = examples_dir or default_examples_dir()
    if not (examples / CT_DICOM).is_dir():
        raise InputError("sample data not found; pass --examples DIR", examples / CT_DICOM)
    ct = read_series(examples / CT_DICOM)
    reference = reference_labels_on(ct, examples / CT_REFERENCE)
    ct_dir = Path(out_dir) / "ct"
    image_path = write_nifti(ct, ct_dir / "image.nii.gz")
    ct_model = examples.parent / CT_DEMO_MODEL
    if ct_model.is_file():
        result = segment(examples / CT_DICOM, model_path=ct_model, out_dir=ct_dir, progress=False)
        labels, ct_dice = result.labels, dice_by_name(result.labels, reference)
    else:
        result = export_labels(ct, reference, ct_dir, source_is_dicom=True)
        labels, ct_dice = reference, {}
    volumes = {
        labels.labels[v]: float(np.count_nonzero(labels.array == v)) * ct.voxel_volume_ml
        for v in labels.present_labels()
    }
    files = [image_path, *result.files()]
    model = examples.parent / SHIPPED_MODEL
    dice: dict[str, dict[str, float]] = {}
    if model.is_file() and (examples / HIPPOCAMPUS).is_dir():
        dice, written = segment_examples(
            examples / HIPPOCAMPUS, model, Path(out_dir) / "hippocampus"
        )
        files.extend(written)
    return DemoResult(
        ct_dir=ct_dir,
        files=files,
        structures=volumes,
        hippocampus_dice=dice,
        ct_model=ct_model if ct_model.is_file() else None,
        ct_dice=ct_dice,
    )


def dice_by_name(prediction: LabelMap, reference: LabelMap) -> dict[str, float]:
    """Dice of each predicted structure against the reference structures of its name.

    A reference structure counts for a predicted one of the same name or a name that extends
    it (``kidney`` gathers ``kidney_left`` and ``kidney_right``); both maps share one grid.
    A structure the reference does not hold (not in the field of view) scores NaN.
    """
    scores = {}
    for value, name in prediction.labels.items():
        matching = [v for v, n in reference.labels.items() if n == name or n.startswith(f"{name}_")]
        truth = np.isin(reference.array, matching)
        found = dice_score(prediction.array == value, truth)
        scores[name] = found if truth.any() else float("nan")
    return scores


def segment_examples(
    dataset_dir: Path, model: Path, out_dir: Path
) -> tuple[dict[str, dict[str, float]], list[Path]]:
    """Segment every case of an MSD-layout folder with a model and score it against its labels.

    Args:
        dataset_dir: Folder with ``dataset.json`` listing ``image``/``label`` pairs.
        model: A medverse checkpoint.
        out_dir: One output folder per case is written below it.

    Returns:
        Case name -> structure name -> Dice, and the files written.
    """
    from medverse.inference.api import segment

    entries = json.loads((dataset_dir / "dataset.json").read_text())["training"]
    scores: dict[str, dict[str, float]] = {}
    written: list[Path] = []
    for entry in entries:
        case = Path(entry["image"]).name.removesuffix(".nii.gz")
        result = segment(
            dataset_dir / entry["image"], model_path=model, out_dir=out_dir / case, progress=False
        )
        truth = read_nifti_labels(dataset_dir / entry["label"]).array
        scores[case] = {
            name: dice_score(result.labels.array == value, truth == value)
            for value, name in result.labels.labels.items()
        }
        written.extend(result.files())
    return scores, written


def dice_score(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(prediction, truth).sum()) / total
