"""Small conversions shared by the ClientApp and the ServerApp."""

from __future__ import annotations

from collections.abc import Mapping

from flwr.app import MetricRecord
from flwr.app.typing import MetricRecordValues


def metric_record(values: Mapping[str, float]) -> MetricRecord:
    """Numbers as a Flower MetricRecord (every value a float)."""
    data: dict[str, MetricRecordValues] = {k: float(v) for k, v in values.items()}
    return MetricRecord(data)
