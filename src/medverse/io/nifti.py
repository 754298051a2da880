"""NIfTI read and write that keep the affine: a Volume in, a Volume out.

``.nii.gz`` files are decompressed with ISA-L (``isal``) where it is installed: about twice
as fast as zlib (a 512x512x300 int16 CT: 0.45 s against 0.87 s on one AVX-512 EPYC core),
the same bytes. Without it nibabel's own gzip reader runs.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np

from medverse.core.errors import InputError, NiftiError, error_text
from medverse.core.volume import LabelMap, Volume
from medverse.io.atomic import atomic_path

igzip: ModuleType | None
try:  # optional: ISA-L gzip (see the module docstring)
    from isal import igzip
except ImportError:  # pragma: no cover - isal is in requirements.txt
    igzip = None

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_VOXELS = 2_000_000_000  # refuse headers that claim more voxels than any scanner makes
_READ_ERRORS = (
    nib.filebasedimages.ImageFileError,
    nib.spatialimages.HeaderDataError,
    ValueError,
    TypeError,
    OSError,
    EOFError,
    MemoryError,
    zlib.error,
)
_NIFTI_HEADER_SIZES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}


@contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's own stderr messages (we raise one clear error instead)."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_header_size(image: object, path: Path) -> None:
    """Refuse a header whose dimensions are impossible before any data is read."""
    shape = tuple(int(n) for n in getattr(image, "shape", ()))
    if any(n < 1 for n in shape):
        raise NiftiError(f"NIfTI header has a non-positive dimension {shape}", path)
    if int(np.prod(shape, dtype=np.float64)) > MAX_VOXELS:
        raise NiftiError(f"NIfTI header claims an impossible size {shape}", path)


def is_nifti_path(path: str | Path) -> bool:
    """Return True if the file name ends in ``.nii`` or ``.nii.gz``."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | Path) -> Volume:
    """Read a 3D NIfTI file (a trailing singleton 4th axis is dropped).

    Args:
        path: A ``.nii`` or ``.nii.gz`` file.

    Returns:
        The Volume, its affine taken from the sform (or qform) as nibabel resolves it.

    Raises:
        InputError: If the file does not exist.
        NiftiError: If the header or data is broken, or the image is not 3D.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    try:
        with _quiet_nibabel():
            array, affine = _read_voxels(path)
    except NiftiError:
        raise
    except _READ_ERRORS as e:
        raise NiftiError(f"not a readable NIfTI image ({error_text(e)})", path) from None
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise NiftiError(f"expected a 3D image, found shape {tuple(array.shape)}", path)
    if min(array.shape) < 1 or not np.all(np.isfinite(affine)):
        raise NiftiError("header describes an empty grid or a non-finite affine", path)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NiftiError("header affine is singular (zero voxel size)", path)
    return Volume(array=array, affine=affine, meta={"source": str(path)})


def _read_voxels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The voxels (scaled as the header says) and the affine; ISA-L for ``.nii.gz``."""
    if igzip is None or not path.name.lower().endswith(".gz"):
        image = nib.load(str(path))
        _check_header_size(image, path)
        array = np.asanyarray(image.dataobj)  # type: ignore[attr-defined]
        return array, np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    with igzip.open(path, "rb") as stream:
        start = stream.read(4)  # sizeof_hdr, in the file's byte order
        sizes = {int.from_bytes(start, "little"), int.from_bytes(start, "big")}
        kinds = [_NIFTI_HEADER_SIZES[n] for n in sizes if n in _NIFTI_HEADER_SIZES]
        if len(start) < 4 or not kinds:
            raise NiftiError("not a NIfTI-1 or NIfTI-2 header", path)
        stream.seek(0)
        holder = nib.FileHolder(filename=str(path), fileobj=stream)
        image = kinds[0].from_file_map({"header": holder, "image": holder})
        _check_header_size(image, path)
        array = np.asanyarray(image.dataobj)
    return array, np.asarray(image.affine, dtype=np.float64)


def read_nifti_labels(path: str | Path, labels: dict[int, str] | None = None) -> LabelMap:
    """Read a NIfTI label map; non-integer data that holds only whole numbers is accepted.

    Args:
        path: A ``.nii``/``.nii.gz`` file with integer labels.
        labels: Names for the label values; defaults to ``label_<v>`` for each value present.

    Raises:
        NiftiError: If the voxels are not whole numbers.
    """
    volume = read_nifti(path)
    array = volume.array
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise NiftiError("label map holds non-integer values", path)
        array = rounded.astype(np.int32)
    if array.min() < 0:
        raise NiftiError("label map holds negative values", path)
    array = array.astype(np.uint8 if array.max() < 256 else np.uint16)
    if labels is None:
        labels = {int(v): f"label_{int(v)}" for v in np.unique(array) if v != 0}
    return LabelMap(array=array, affine=volume.affine, meta=volume.meta, labels=labels)


def write_nifti(volume: Volume, path: str | Path) -> Path:
    """Write a Volume as NIfTI with its affine as both sform and qform, atomically.

    Args:
        volume: The image or label map.
        path: Target ``.nii`` or ``.nii.gz`` path.

    Returns:
        The written path.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise InputError("output must end in .nii or .nii.gz", path)
    return write_nifti_array(np.asarray(volume.array), volume.affine, path)


def write_nifti_array(array: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write a 3D or 4D array with its affine (sform and qform), atomically.

    Args:
        array: Voxels ``[i, j, k]`` or ``[i, j, k, volume]``.
        affine: 4x4 voxel index -> RAS mm.
        path: Target ``.nii`` or ``.nii.gz`` path.

    Returns:
        The written path.
    """
    path = Path(path)
    image = nib.Nifti1Image(array, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path
