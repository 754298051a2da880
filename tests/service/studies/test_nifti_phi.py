"""A NIfTI upload reaches researchers without its free-text header fields (issue 12)."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np

from tests.conftest import HIPPOCAMPUS
from tests.service.conftest import Api

PHI = {
    "descrip": b"Albus Dumbledore DOB 1881",
    "aux_file": b"Dumbledore.nii",
    "intent_name": b"AlbusPHI",
    "db_name": b"Hogwarts",
}
EXTENSION = b"PatientName=Albus^Dumbledore MRN 4711"


def _nifti_with_phi() -> tuple[bytes, nib.Nifti1Image]:
    source = nib.load(HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz")
    image = nib.Nifti1Image(np.asanyarray(source.dataobj), source.affine, source.header)
    for name, value in PHI.items():
        image.header[name] = value
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", EXTENSION))
    buffer = io.BytesIO()
    image.to_file_map(
        {"image": nib.FileHolder(fileobj=buffer), "header": nib.FileHolder(fileobj=buffer)}
    )
    return gzip.compress(buffer.getvalue()), image


def test_a_researcher_receives_no_byte_of_a_nifti_free_text_header(api: Api) -> None:
    upload, original = _nifti_with_phi()
    files = [("files", ("case.nii.gz", upload, "application/gzip"))]
    study = api.client.post("/api/studies", files=files, headers=api.clinician).json()
    assert (
        api.client.get(f"/api/studies/{study['id']}", headers=api.researcher).json()["identified"]
        is False
    )

    answer = api.client.get(
        f"/api/viewer/studies/{study['id']}/image.nii.gz", headers=api.researcher
    )

    assert answer.status_code == 200
    received = gzip.decompress(answer.content)
    for phrase in [*PHI.values(), EXTENSION, b"Dumbledore", b"Albus"]:
        assert phrase not in received
    served = nib.Nifti1Image.from_bytes(received)
    assert not served.header.extensions
    np.testing.assert_array_equal(np.asanyarray(served.dataobj), np.asanyarray(original.dataobj))
    np.testing.assert_allclose(served.affine, original.affine)
