"""medverse: DICOM/NIfTI in, 3D segmentation, DICOM SEG, meshes and measured reports out."""

from __future__ import annotations

__version__ = "0.1.0"
