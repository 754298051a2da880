"""Shared fixtures: where the real data lives, and a CUDA skip for ``gpu`` tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples"
CT_SERIES = SHARED_DATA / "dicom_ct_series_totalsegmentator" / "dicom"
CT_LABELS = SHARED_DATA / "dicom_ct_series_totalsegmentator" / "example_seg_dicom.nii.gz"
MR_STUDY = SHARED_DATA / "dicom_mr_study_brain"
DCMQI = SHARED_DATA / "dicom_seg_sr_dcmqi"
HIPPOCAMPUS = SHARED_DATA / "msd_task04_hippocampus"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests cleanly when no CUDA device is present."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    """Give every test the process's torch thread count back, whatever the test set."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder beside the checkout (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA}; clone beside ../shared")
    return SHARED_DATA
