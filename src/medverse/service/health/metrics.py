"""Prometheus text exposition: queue depth, job durations, studies, and GPU memory under CUDA."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, case, func, select

from medverse.service.db import Database
from medverse.service.jobs.store import counts_by_state
from medverse.service.tables import Job, JobState, Study

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render_metrics(db: Database) -> str:
    """All metrics in the Prometheus text format.

    Counts come from the shared database, so every worker's jobs are included whichever
    process is scraped; GPU memory is this process's view of its CUDA devices.
    """
    lines: list[str] = []
    lines += _family(
        "medverse_jobs",
        "gauge",
        "Jobs in the store by state (queued = queue depth).",
        ((f'state="{state.value}"', count) for state, count in counts_by_state(db).items()),
    )
    lines += _durations(db)
    with db.reading() as session:
        studies = session.execute(
            select(Study.identified, func.count()).group_by(Study.identified)
        ).all()
    by_kind = {bool(identified): int(n) for identified, n in studies}
    lines += _family(
        "medverse_studies",
        "gauge",
        "Stored studies.",
        ((f'identified="{str(k).lower()}"', by_kind.get(k, 0)) for k in (True, False)),
    )
    lines += _gpu_memory()
    return "\n".join(lines) + "\n"


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    out += [
        f"{name}{{{labels}}} {_number(value)}" if labels else f"{name} {_number(value)}"
        for labels, value in samples
    ]
    return out


def _durations(db: Database) -> list[str]:
    name = "medverse_job_duration_seconds"
    finished = Job.duration_seconds.is_not(None) & (Job.state == JobState.SUCCEEDED.value)
    columns: list[ColumnElement[Any]] = [
        func.count(),
        func.coalesce(func.sum(Job.duration_seconds), 0.0),
    ]
    columns += [
        func.coalesce(func.sum(case((Job.duration_seconds <= b, 1), else_=0)), 0)
        for b in DURATION_BUCKETS
    ]
    with db.reading() as session:
        count, total, *cumulative = session.execute(select(*columns).where(finished)).one()
    out = [
        f"# HELP {name} Run time of succeeded jobs (claim to results published).",
        f"# TYPE {name} histogram",
    ]
    out += [
        f'{name}_bucket{{le="{_number(b)}"}} {int(n)}' for b, n in zip(DURATION_BUCKETS, cumulative)
    ]
    out += [f'{name}_bucket{{le="+Inf"}} {int(count)}', f"{name}_sum {_number(float(total))}"]
    out.append(f"{name}_count {int(count)}")
    return out


def _gpu_memory() -> list[str]:
    """Per-device memory when this process has CUDA (torch is only asked if already loaded)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    samples_used, samples_total, samples_alloc = [], [], []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        label = f'device="{index}"'
        samples_used.append((label, total - free))
        samples_total.append((label, total))
        samples_alloc.append((label, torch.cuda.memory_allocated(index)))
    return [
        *_family(
            "medverse_gpu_memory_used_bytes",
            "gauge",
            "GPU memory in use (all processes).",
            samples_used,
        ),
        *_family(
            "medverse_gpu_memory_total_bytes", "gauge", "GPU memory on the device.", samples_total
        ),
        *_family(
            "medverse_gpu_memory_allocated_bytes",
            "gauge",
            "GPU memory held by this process's tensors.",
            samples_alloc,
        ),
    ]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
