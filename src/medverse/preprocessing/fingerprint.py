"""Dataset fingerprint: spacings, shapes, foreground intensities and labels, saved as JSON."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from medverse.core.errors import ConfigError, InputError
from medverse.core.registry import Modality
from medverse.core.volume import LabelMap, Volume
from medverse.io.atomic import write_text_atomic
from medverse.preprocessing.msd import (
    MsdDataset,
    iter_msd_cases,
    load_msd_dataset,
    read_msd_index,
)

__all__ = [
    "Fingerprint",
    "IntensityStats",
    "MsdDataset",
    "compute_fingerprint",
    "fingerprint_msd_dataset",
    "load_msd_dataset",
]

SAMPLES_PER_CASE = 10_000


class IntensityStats(BaseModel):
    """Intensity statistics over (sampled) foreground voxels.

    Attributes:
        mean: Mean intensity.
        std: Standard deviation.
        median: Median.
        min: Smallest sampled value.
        max: Largest sampled value.
        percentile_00_5: The 0.5th percentile.
        percentile_99_5: The 99.5th percentile.
        num_samples: How many voxels the statistics are over.
    """

    model_config = ConfigDict(frozen=True)

    mean: float
    std: float
    median: float
    min: float
    max: float
    percentile_00_5: float
    percentile_99_5: float
    num_samples: int


class Fingerprint(BaseModel):
    """What a dataset looks like, measured once and saved as ``fingerprint.json``.

    Attributes:
        modality: Imaging modality (decides normalisation).
        num_cases: Number of cases measured.
        case_names: One name per case.
        spacings: Per-case voxel size in mm, ``[i, j, k]``.
        shapes: Per-case grid size, ``[i, j, k]``.
        median_spacing: Per-axis median of ``spacings``.
        median_shape: Per-axis median of ``shapes`` (native voxels).
        foreground: Intensities over label > 0 voxels (all voxels where no label is given).
        label_values: Every label value seen in the label maps (0 included), ascending.
        labels: Label value -> name, background excluded.
    """

    model_config = ConfigDict(frozen=True)

    modality: Modality
    num_cases: int
    case_names: list[str]
    spacings: list[tuple[float, float, float]]
    shapes: list[tuple[int, int, int]]
    median_spacing: tuple[float, float, float]
    median_shape: tuple[int, int, int]
    foreground: IntensityStats
    label_values: list[int]
    labels: dict[int, str]

    def save(self, path: str | Path) -> Path:
        """Write the fingerprint as JSON, atomically, and return the path."""
        return write_text_atomic(path, self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Fingerprint:
        """Read a fingerprint written by `save`.

        Raises:
            InputError: If the file does not exist.
            ConfigError: If it is not a valid fingerprint.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError("fingerprint file not found", path)
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError as e:
            raise ConfigError(f"not a valid fingerprint ({first_error(e)})", path) from None


def compute_fingerprint(
    cases: Iterable[tuple[Volume, LabelMap | None]],
    modality: Modality | str,
    *,
    labels: Mapping[int, str] | None = None,
    samples_per_case: int = SAMPLES_PER_CASE,
    seed: int = 0,
) -> Fingerprint:
    """Measure a dataset: grids, foreground intensities and label values.

    Args:
        cases: ``(image, label map or None)`` pairs; read lazily, one at a time.
        modality: ``"CT"`` or ``"MR"``.
        labels: Label names; defaults to the union of the label maps' names.
        samples_per_case: Foreground voxels sampled per case for the intensity statistics.
        seed: Seed of the voxel sampling, so the fingerprint is reproducible.

    Raises:
        InputError: Naming the case, if an image and its label map differ in shape, or if
            there is no case.
    """
    rng = np.random.default_rng(seed)
    names: list[str] = []
    spacings: list[tuple[float, float, float]] = []
    shapes: list[tuple[int, int, int]] = []
    samples: list[np.ndarray] = []
    values: set[int] = set()
    seen_names: dict[int, str] = {}
    for number, (image, label) in enumerate(cases):
        name = _case_name(image, number)
        names.append(name)
        spacings.append(image.spacing)
        shapes.append(image.shape)
        samples.append(_sample_foreground(image, label, name, samples_per_case, rng))
        if label is not None:
            values.update(int(v) for v in np.unique(label.array))
            seen_names.update(label.labels)
    if not names:
        raise InputError("no cases to fingerprint")
    foreground = np.concatenate(samples)
    if foreground.size == 0:
        raise InputError("no foreground voxels in any case: every label map is empty")
    return Fingerprint(
        modality=Modality(modality),
        num_cases=len(names),
        case_names=names,
        spacings=spacings,
        shapes=shapes,
        median_spacing=_median3(spacings),
        median_shape=_round3(_median3(shapes)),
        foreground=intensity_stats(foreground),
        label_values=sorted(values),
        labels=dict(sorted((labels if labels is not None else seen_names).items())),
    )


def fingerprint_msd_dataset(
    dataset_dir: str | Path, *, max_cases: int | None = None
) -> Fingerprint:
    """Fingerprint an MSD dataset folder, reading one case at a time.

    Args:
        dataset_dir: The folder with ``dataset.json``.
        max_cases: Measure only the first ``max_cases`` cases (all when None).

    Raises:
        InputError: Naming the case, for a missing file, a shape mismatch or a label value
            that dataset.json does not name.
    """
    index = read_msd_index(dataset_dir)
    if max_cases is not None:
        index = type(index)(index.root, index.entries[:max_cases], index.labels, index.modality)
    pairs = ((case.image, case.label) for case in iter_msd_cases(index))
    return compute_fingerprint(pairs, index.modality, labels=index.labels)


def intensity_stats(values: np.ndarray) -> IntensityStats:
    """Summarise sampled intensities (mean, std, median, range, 0.5/99.5 percentiles)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise InputError("no voxels to compute intensity statistics from")
    p_low, median, p_high = np.percentile(v, [0.5, 50.0, 99.5])
    return IntensityStats(
        mean=float(v.mean()),
        std=float(v.std()),
        median=float(median),
        min=float(v.min()),
        max=float(v.max()),
        percentile_00_5=float(p_low),
        percentile_99_5=float(p_high),
        num_samples=int(v.size),
    )


def _sample_foreground(
    image: Volume, label: LabelMap | None, name: str, count: int, rng: np.random.Generator
) -> np.ndarray:
    if label is not None and label.shape != image.shape:
        raise InputError(
            f"case {name}: label shape {label.shape} differs from image shape {image.shape}"
        )
    data = np.asarray(image.array)
    voxels = data[np.asarray(label.array) > 0] if label is not None else data.ravel()
    if voxels.size == 0:
        return np.empty(0, dtype=np.float64)
    return rng.choice(voxels, size=count, replace=True).astype(np.float64)


def _case_name(image: Volume, number: int) -> str:
    source = image.meta.get("source")
    if source:
        return Path(str(source)).name.removesuffix(".gz").removesuffix(".nii")
    return f"case_{number:04d}"


def _median3(
    rows: list[tuple[float, float, float]] | list[tuple[int, int, int]],
) -> tuple[float, float, float]:
    m = np.median(np.asarray(rows, dtype=np.float64), axis=0)
    return (float(m[0]), float(m[1]), float(m[2]))


def _round3(values: tuple[float, float, float]) -> tuple[int, int, int]:
    return (round(values[0]), round(values[1]), round(values[2]))


def first_error(error: ValidationError) -> str:
    """Return the first pydantic validation error as ``"field: message"``."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
