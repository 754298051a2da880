"""Outbound-message guard: a site sends only parameter-shaped arrays, masked vectors, numbers."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from medverse.core.errors import MedverseError

# Path-like (slashes, drive letters, file suffixes of images/tables) or case-id-like strings.
_PATHLIKE = re.compile(r"[/\\]|^[A-Za-z]:|\.(nii|gz|dcm|csv|data|png|json|npy)$", re.I)
_CASE_ID = re.compile(r"(hippocampus|case|patient|subject)[_-]?\d+|^\d{3,}$", re.I)


class OutboundRefusedError(MedverseError):
    """A site's message would carry something other than model updates and numeric metrics."""


def check_outbound(
    site: str,
    arrays: Mapping[str, np.ndarray],
    metrics: Mapping[str, object],
    parameter_shapes: Mapping[str, tuple[int, ...]],
    masked_length: int | None = None,
) -> None:
    """Refuse (raise) unless the message is only model-shaped arrays and numeric metrics.

    Args:
        site: The site's name, used in the refusal message.
        arrays: Arrays about to be sent, by key.
        metrics: Metrics about to be sent, by key.
        parameter_shapes: The model's parameter shapes, by key.
        masked_length: Length of the agreed flat (masked or sparse) vector, if any.

    Raises:
        OutboundRefusedError: Naming the site, the key and why it may not leave the site.
    """
    for key, array in arrays.items():
        _check_array(site, key, np.asarray(array), parameter_shapes, masked_length)
    for key, value in metrics.items():
        _check_metric(site, key, value)


def _check_array(
    site: str,
    key: str,
    array: np.ndarray,
    shapes: Mapping[str, tuple[int, ...]],
    masked_length: int | None,
) -> None:
    if array.dtype.kind not in "fiu":
        raise OutboundRefusedError(
            f"site {site}: array {key!r} has dtype {array.dtype}, not numeric"
        )
    if key in shapes and tuple(array.shape) == tuple(shapes[key]):
        return
    if masked_length is not None and array.ndim == 1 and array.size == masked_length:
        return
    if array.ndim >= 2 and key not in shapes:
        raise OutboundRefusedError(
            f"site {site}: array {key!r} of shape {array.shape} is image-shaped and is not a "
            "model parameter; raw data never leaves a site"
        )
    expected = shapes.get(key, f"a flat vector of {masked_length}" if masked_length else None)
    raise OutboundRefusedError(
        f"site {site}: array {key!r} has shape {array.shape}, expected {expected or 'no such key'}"
    )


def _check_metric(site: str, key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        if isinstance(value, str) and (_PATHLIKE.search(value) or _CASE_ID.search(value)):
            raise OutboundRefusedError(
                f"site {site}: metric {key!r} is a string that looks like a path or case id"
            )
        raise OutboundRefusedError(
            f"site {site}: metric {key!r} is {type(value).__name__}, only numbers may be sent"
        )
    if not np.isfinite(float(value)):
        raise OutboundRefusedError(f"site {site}: metric {key!r} is not finite ({value})")
