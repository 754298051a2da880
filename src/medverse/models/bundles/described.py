"""What loading a bundle found (plan, orientation, labels, weights digest), cached by its bytes.

Parsing a bundle's config needs MONAI, whose import alone takes about 3 s. A `segment` run
whose network then comes from the export cache (OpenVINO) needs only the plan and the weights
digest, so a full load writes them here and a later load of the same files (same config,
metadata and weights bytes, same medverse version) reads them back instead.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import medverse
from medverse.core.logging import get_logger
from medverse.io.atomic import atomic_path
from medverse.models.bundles.config import BundleFiles
from medverse.preprocessing.plan import Plan

log = get_logger(__name__)

_CHUNK = 1 << 20


def description_cache_dir() -> Path:
    """Where bundle descriptions are kept: ``~/.cache/medverse/bundles``."""
    return Path.home() / ".cache" / "medverse" / "bundles"


def bundle_key(files: BundleFiles) -> str:
    """SHA-256 of the medverse version and the bytes of the config, metadata and weights."""
    digest = hashlib.sha256(str(medverse.__version__).encode())
    for path in (files.config, files.metadata, files.weights):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def read_description(key: str, cache_dir: Path | None = None) -> dict[str, Any] | None:
    """The description a full load of the files with this `bundle_key` wrote, or None.

    Returns:
        ``plan`` (a `Plan`), ``labels``, ``preset``, ``meta``, ``orientation`` and ``digest``;
        None when there is none or it is unreadable (logged).
    """
    path = (cache_dir or description_cache_dir()) / f"{key}.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["plan"] = Plan.model_validate(doc["plan"])
        doc["labels"] = {int(k): str(v) for k, v in doc["labels"].items()}
        for key in ("preset", "meta", "orientation", "digest"):
            doc[key]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ValidationError) as e:
        log.warning("ignoring an unreadable bundle description %s (%s)", path, e)
        return None
    return dict(doc)


def write_description(
    key: str,
    *,
    plan: Plan,
    labels: dict[int, str],
    preset: str,
    meta: dict[str, Any],
    orientation: str | None,
    digest: str,
    cache_dir: Path | None = None,
) -> Path | None:
    """Store what a full load of the files with this `bundle_key` found.

    Returns:
        The file written; None (and a log line) if the cache cannot be written.
    """
    folder = cache_dir or description_cache_dir()
    doc = {
        "plan": plan.model_dump(mode="json"),
        "labels": {str(k): v for k, v in labels.items()},
        "preset": preset,
        "meta": meta,
        "orientation": orientation,
        "digest": digest,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"{key}.json") as tmp:
            tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    except (OSError, TypeError, ValueError) as e:
        log.warning("could not cache the bundle description in %s (%s)", folder, e)
        return None
    return folder / f"{key}.json"
