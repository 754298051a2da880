"""Read and validate a Medical Segmentation Decathlon (MSD) dataset folder, one case at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medverse.core.errors import InputError
from medverse.core.logging import get_logger
from medverse.core.registry import Modality
from medverse.core.volume import LabelMap, Volume
from medverse.io.nifti import read_nifti, read_nifti_labels

_log = get_logger(__name__)

# Words MSD-style dataset.json files use for their (single) channel.
_MR_WORDS = {"MR", "MRI", "T1", "T1W", "T2", "T2W", "FLAIR", "T1GD", "ADC", "DWI", "PD"}


@dataclass(frozen=True)
class MsdEntry:
    """One training case listed in dataset.json (files not read yet).

    Attributes:
        name: Case name, the image file name without ``.nii.gz``.
        image_path: Absolute path of the image.
        label_path: Absolute path of the label map.
    """

    name: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class MsdIndex:
    """What dataset.json says: the cases, the label names and the modality.

    Attributes:
        root: The dataset folder.
        entries: The training cases, in dataset.json order.
        labels: Label value -> name, background (0) excluded.
        modality: The imaging modality of the single channel.
    """

    root: Path
    entries: list[MsdEntry]
    labels: dict[int, str]
    modality: Modality


@dataclass(frozen=True)
class MsdCase:
    """One loaded and validated case.

    Attributes:
        name: Case name.
        image: The image.
        label: The label map on the same grid, with the dataset's label names.
    """

    name: str
    image: Volume
    label: LabelMap


@dataclass(frozen=True)
class MsdDataset:
    """A fully loaded MSD dataset.

    Attributes:
        root: The dataset folder.
        cases: Every training case, loaded and validated.
        labels: Label value -> name, background (0) excluded.
        modality: The imaging modality.
    """

    root: Path
    cases: list[MsdCase]
    labels: dict[int, str]
    modality: Modality


def read_msd_index(dataset_dir: str | Path) -> MsdIndex:
    """Parse ``dataset.json`` and check that every listed file exists.

    Args:
        dataset_dir: An MSD folder holding ``dataset.json``, ``imagesTr`` and ``labelsTr``.

    Returns:
        The index; no image is read.

    Raises:
        InputError: If dataset.json is missing or malformed, or a listed file is missing.
    """
    root = Path(dataset_dir).resolve()
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise InputError("no dataset.json here (expected an MSD dataset folder)", root)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"dataset.json is not valid JSON ({e})", meta_path) from None
    if not isinstance(meta, dict):
        raise InputError("dataset.json must hold a JSON object", meta_path)
    labels = _parse_labels(meta.get("labels"), meta_path)
    modality = _parse_modality(meta.get("modality"), meta_path)
    training = meta.get("training")
    if not isinstance(training, list) or not training:
        raise InputError('"training" must be a non-empty list of {image, label}', meta_path)
    entries = [_parse_entry(root, item, n, meta_path) for n, item in enumerate(training)]
    return MsdIndex(root=root, entries=entries, labels=labels, modality=modality)


def load_msd_case(entry: MsdEntry, labels: Mapping[int, str]) -> MsdCase:
    """Read one case and check it: same grid for image and label, only known label values.

    Args:
        entry: The case from the index.
        labels: The dataset's label names (background excluded).

    Raises:
        InputError: Naming the case's file, if a file is unreadable, the shapes differ or the
            label map holds a value dataset.json does not name.
    """
    image = read_nifti(entry.image_path)
    label = read_nifti_labels(entry.label_path, dict(labels))
    if image.shape != label.shape:
        raise InputError(
            f"case {entry.name}: label shape {label.shape} differs from image shape {image.shape}",
            entry.label_path,
        )
    unknown = sorted(set(label.present_labels()) - {int(v) for v in labels})
    if unknown:
        raise InputError(
            f"case {entry.name}: label values {unknown} are not in dataset.json labels "
            f"{sorted(labels)}",
            entry.label_path,
        )
    if not np.allclose(image.affine, label.affine, atol=1e-3):
        _log.warning("case %s: image and label affines differ; using the image's", entry.name)
    label = LabelMap(array=label.array, affine=image.affine, meta=label.meta, labels=label.labels)
    return MsdCase(name=entry.name, image=image, label=label)


def iter_msd_cases(index: MsdIndex) -> Iterator[MsdCase]:
    """Yield each case of the index, loaded and validated, one at a time."""
    for entry in index.entries:
        yield load_msd_case(entry, index.labels)


def load_msd_dataset(dataset_dir: str | Path, *, max_cases: int | None = None) -> MsdDataset:
    """Load and validate every training case of an MSD dataset.

    Args:
        dataset_dir: The MSD folder.
        max_cases: Load only the first ``max_cases`` cases (all when None).

    Raises:
        InputError: Naming the case, for the problems listed in `read_msd_index` and
            `load_msd_case`.
    """
    index = read_msd_index(dataset_dir)
    entries = index.entries if max_cases is None else index.entries[:max_cases]
    cases = [load_msd_case(entry, index.labels) for entry in entries]
    return MsdDataset(root=index.root, cases=cases, labels=index.labels, modality=index.modality)


def _parse_labels(raw: Any, meta_path: Path) -> dict[int, str]:
    if not isinstance(raw, dict) or not raw:
        raise InputError('"labels" must be an object like {"0": "background", ...}', meta_path)
    try:
        labels = {int(k): str(v) for k, v in raw.items()}
    except ValueError:
        raise InputError(f'"labels" keys must be integers, got {sorted(raw)}', meta_path) from None
    if any(v < 0 for v in labels):
        raise InputError('"labels" keys must be >= 0', meta_path)
    return {v: n for v, n in sorted(labels.items()) if v != 0}


def _parse_modality(raw: Any, meta_path: Path) -> Modality:
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise InputError(
                f"only single-channel datasets are supported, modality lists {len(raw)}", meta_path
            )
        raw = next(iter(raw.values()))
    word = str(raw).strip().upper()
    if word == "CT":
        return Modality.CT
    if word in _MR_WORDS:
        return Modality.MR
    raise InputError(f"unknown modality {raw!r}; medverse plans CT and MR data", meta_path)


def _parse_entry(root: Path, item: Any, number: int, meta_path: Path) -> MsdEntry:
    if not isinstance(item, dict) or "image" not in item or "label" not in item:
        raise InputError(f'training entry {number} needs "image" and "label"', meta_path)
    image_path = (root / str(item["image"])).resolve()
    label_path = (root / str(item["label"])).resolve()
    name = image_path.name.removesuffix(".gz").removesuffix(".nii")
    for path in (image_path, label_path):
        if not path.is_file():
            raise InputError(f"case {name}: file listed in dataset.json is missing", path)
    return MsdEntry(name=name, image_path=image_path, label_path=label_path)
