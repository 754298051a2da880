"""The outbound guard refuses anything but model-shaped arrays and numeric metrics."""

from __future__ import annotations

import numpy as np
import pytest

from medverse.federated.guard import OutboundRefusedError, check_outbound

SHAPES = {"fc.weight": (2, 13), "fc.bias": (2,)}


def test_model_update_and_numbers_pass() -> None:
    arrays = {"fc.weight": np.zeros((2, 13), np.float32), "fc.bias": np.zeros(2, np.float32)}
    check_outbound("cleveland", arrays, {"num-examples": 240, "loss": 0.4}, SHAPES)
    check_outbound("va", {"masked": np.zeros(28, np.int64)}, {}, SHAPES, masked_length=28)


@pytest.mark.parametrize(
    ("arrays", "metrics", "reason"),
    [
        ({"image": np.zeros((32, 48, 32), np.float32)}, {}, "image-shaped"),
        ({"fc.weight": np.zeros((3, 13))}, {}, "expected \\(2, 13\\)"),
        ({"fc.bias": np.array(["a", "b"])}, {}, "not numeric"),
        ({}, {"file": "/data/hippocampus_001.nii.gz"}, "path or case id"),
        ({}, {"case": "hippocampus_017"}, "path or case id"),
        ({}, {"note": "ok"}, "only numbers"),
        ({}, {"loss": float("nan")}, "not finite"),
    ],
)
def test_refusals_name_site_and_reason(
    arrays: dict[str, np.ndarray], metrics: dict[str, object], reason: str
) -> None:
    with pytest.raises(OutboundRefusedError, match=f"site hungarian: .*{reason}"):
        check_outbound("hungarian", arrays, metrics, SHAPES, masked_length=28)
