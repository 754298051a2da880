"""A PACS-style zip with a stray non-DICOM file is stored without it, and says so (#12)."""

from __future__ import annotations

from tests.conftest import CT_SERIES
from tests.service.conftest import Api, zip_of


def test_a_zip_with_a_readme_is_stored_with_the_readme_skipped_and_named(api: Api) -> None:
    entries = {f"export/CT/{p.name}": p.read_bytes() for p in sorted(CT_SERIES.iterdir())}
    entries["export/README"] = b"Exported by the PACS. Not an image.\n"
    files = [("files", ("export.zip", zip_of(entries), "application/zip"))]

    answer = api.client.post("/api/studies", files=files, headers=api.clinician)

    assert answer.status_code == 201, answer.text
    assert answer.json()["skipped"] == ["export.zip:export/README"]
    assert answer.json()["instances_added"] == len(entries) - 1
