"""Prometheus metrics: queue depth by state, and GPU memory when CUDA is present."""

from __future__ import annotations

import pytest

from medverse.service.db import Database
from medverse.service.health.metrics import render_metrics
from medverse.service.jobs.store import claim_next, create_job
from tests.service.conftest import insert_study


def test_queue_depth_is_reported_by_state(db: Database) -> None:
    study_id = insert_study(db)
    for _ in range(3):
        create_job(db, study_id=study_id, series_uid=None, model="m", created_by="t")
    claim_next(db, "w", lease_seconds=30)

    text = render_metrics(db)

    assert 'medverse_jobs{state="queued"} 2' in text
    assert 'medverse_jobs{state="running"} 1' in text
    assert "# TYPE medverse_job_duration_seconds histogram" in text
    assert text.endswith("\n")


@pytest.mark.gpu
def test_gpu_memory_is_reported_under_cuda(db: Database) -> None:
    import torch

    held = torch.zeros(1024, 1024, device="cuda")
    text = render_metrics(db)

    assert 'medverse_gpu_memory_used_bytes{device="0"}' in text
    allocated = [line for line in text.splitlines() if line.startswith("medverse_gpu_memory_alloc")]
    assert int(allocated[0].rsplit(" ", 1)[1]) >= held.numel() * 4
