"""The output bundle of a segmentation: labels, SEG, meshes, report and overview; all or none."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medverse.core.errors import DicomError, InputError
from medverse.core.logging import get_logger
from medverse.core.volume import LabelMap, Volume
from medverse.inference.report import Report, measure, write_report
from medverse.io.nifti import write_nifti

_LOG = get_logger(__name__)

LABELS_NAME = "labels.nii.gz"
SEG_NAME = "seg.dcm"
MESHES_NAME = "meshes.glb"
REPORT_NAME = "report.json"
OVERVIEW_NAME = "overview.png"


@dataclass(frozen=True)
class OutputPaths:
    """Where the bundle's files were written.

    Attributes:
        labels: NIfTI label map on the input's grid.
        seg: DICOM SEG referencing the source series (None unless the input was DICOM and a
            structure was found).
        meshes: GLB with one coloured mesh per structure, RAS mm (None when nothing was found).
        report: JSON measurements.
        overview: PNG with three slices per structure.
    """

    labels: Path
    seg: Path | None
    meshes: Path | None
    report: Path
    overview: Path

    def files(self) -> list[Path]:
        """All written files, in bundle order."""
        paths = (self.labels, self.seg, self.meshes, self.report, self.overview)
        return [p for p in paths if p is not None]


def write_outputs(
    image: Volume,
    labels: LabelMap,
    out_dir: str | Path,
    *,
    source_is_dicom: bool,
    report: Report | None = None,
    modality: str | None = None,
    algorithm_name: str = "medverse",
    seg_type: str | None = None,
) -> OutputPaths:
    """Write the whole bundle into ``out_dir``, or nothing at all.

    Files are first written into a hidden temporary folder inside ``out_dir`` and moved in only
    once every writer has succeeded, so a failure leaves ``out_dir`` as it was (a folder created
    for this run is removed again). Existing files of the same names are replaced.

    Args:
        image: The segmented image (the DICOM series when ``source_is_dicom``).
        labels: Labels on the image's grid.
        out_dir: Output folder, created if needed.
        source_is_dicom: Also write ``seg.dcm`` referencing the source instances.
        report: Measurements to write; measured from ``labels`` when omitted.
        modality: Display modality for the overview (defaults to the image metadata).
        algorithm_name: Name recorded in the DICOM SEG as the segmenting algorithm.
        seg_type: DICOM SEG encoding, ``LABELMAP`` (the default: one frame per slice) or
            ``BINARY`` (one frame per slice and segment, for viewers that predate LABELMAP).

    Returns:
        The final paths.

    Raises:
        InputError: If ``out_dir`` is a file or cannot be written, or the labels are not on
            the image's grid.
        MedverseError: From a writer; nothing is moved in then.
        DicomError: If only the DICOM SEG failed (it names ``seg.dcm``): every other file of
            the bundle is in place.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    staging = _staging_folder(out_dir)
    try:
        staged, seg_error = _write_all(
            image, labels, staging, source_is_dicom, report, modality, (algorithm_name, seg_type)
        )
        final = _move_in(staged, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    if seg_error is not None:  # the rest of the bundle is in place: say so, name the SEG
        raise DicomError(
            f"DICOM SEG not written ({seg_error}); {', '.join(p.name for p in final.files())} "
            "were written",
            out_dir / SEG_NAME,
        )
    return final


def _staging_folder(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed and a hidden temporary folder inside it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the output path is a file, not a folder", out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".medverse-outputs-", dir=out_dir))
    except OSError as error:
        raise InputError(f"cannot write here ({error.strerror or error})", out_dir) from None


def _write_all(
    image: Volume,
    labels: LabelMap,
    folder: Path,
    source_is_dicom: bool,
    report: Report | None,
    modality: str | None,
    seg_options: tuple[str, str | None],
) -> tuple[OutputPaths, Exception | None]:
    # imported here: matplotlib, trimesh and highdicom take seconds to import, and a
    # labels-only run (``segment --labels-only``) needs none of them
    from medverse.inference.overview import render_overview
    from medverse.io.seg import write_seg

    found = bool(labels.present_labels())
    report_path = write_report(report or measure(labels, source=image), folder / REPORT_NAME)
    labels_path = write_nifti(labels, folder / LABELS_NAME)
    overview = render_overview(image, labels, folder / OVERVIEW_NAME, modality=modality)
    meshes = _write_meshes(labels, folder / MESHES_NAME) if found else None
    seg, seg_error = None, None
    if source_is_dicom and found:
        algorithm_name, seg_type = seg_options
        try:  # whatever the SEG step does, the labels and the report are kept
            seg = write_seg(
                labels, image, folder / SEG_NAME, algorithm_name=algorithm_name,
                segmentation_type=seg_type,
            )  # fmt: skip
        except Exception as error:  # any failure: reported once the rest of the bundle is in
            seg_error = error
    if not found:
        _LOG.warning("no structure found: no meshes or DICOM SEG written")
    return OutputPaths(labels_path, seg, meshes, report_path, overview), seg_error


def _write_meshes(labels: LabelMap, path: Path) -> Path:
    from medverse.io.mesh import label_meshes, write_glb

    return write_glb(label_meshes(labels), labels, path)


def _move_in(staged: OutputPaths, out_dir: Path) -> OutputPaths:
    """Rename each staged file into ``out_dir`` (same file system, so each move is atomic)."""

    def move(path: Path | None, name: str) -> Path | None:
        target = out_dir / name
        if path is None:  # not produced this time: drop a stale file from an earlier run
            target.unlink(missing_ok=True)
            return None
        os.replace(path, target)
        return target

    seg, meshes = move(staged.seg, SEG_NAME), move(staged.meshes, MESHES_NAME)
    labels, report = move(staged.labels, LABELS_NAME), move(staged.report, REPORT_NAME)
    overview = move(staged.overview, OVERVIEW_NAME)
    assert labels is not None and report is not None and overview is not None
    return OutputPaths(labels, seg, meshes, report, overview)
