"""Reading and writing images: DICOM series, NIfTI, de-identification, DICOM SEG, meshes."""
