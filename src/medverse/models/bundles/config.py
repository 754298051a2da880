"""A MONAI bundle's files and configs, read offline: nothing that would download is evaluated."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medverse.core.errors import ModelError

if TYPE_CHECKING:  # MONAI is imported only when a config is parsed
    from monai.bundle import ConfigParser

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
WEIGHT_NAMES = ("model.pt", "model.ts")
# What "fetch something" looks like in a config: a URL anywhere, or a fetching call in an
# expression ("$...") or a component's "_target_"; refused anywhere network_def can reach.
_URL = re.compile(r"\b(?:https?|ftp)://", re.IGNORECASE)
_FETCH = re.compile(
    r"download|torch\.hub|hf_hub|huggingface|from_pretrained|urlopen|requests\.|load_from_mmar"
    r"|monai\.bundle\.load",
    re.IGNORECASE,
)
_OWN_KEYS = frozenset({"bundle_root"})  # set by medverse to the local folder
_PRETRAINED_KEYS = frozenset({"pretrained", "use_pretrained", "pretrained_weights"})
REFERENCE = re.compile(r"@([A-Za-z0-9_]+(?:(?:::|#)[A-Za-z0-9_]+)*)")


@dataclass(frozen=True)
class BundleFiles:
    """Where a bundle's parts are.

    Attributes:
        root: The bundle folder.
        config: ``configs/inference.json`` (or ``.yaml``/``.yml``).
        metadata: ``configs/metadata.json``.
        weights: ``models/model.pt`` (state dict) or ``models/model.ts`` (TorchScript).
    """

    root: Path
    config: Path
    metadata: Path
    weights: Path


def find_bundle_files(bundle_dir: str | Path) -> BundleFiles:
    """Locate the inference config, the metadata and the weights of a bundle folder.

    Raises:
        ModelError: Naming the missing file.
    """
    root = Path(bundle_dir)
    if not root.is_dir():
        raise ModelError("bundle folder not found", root)
    configs, models = root / "configs", root / "models"
    config = next((configs / n for n in CONFIG_NAMES if (configs / n).is_file()), None)
    if config is None:
        raise ModelError(
            "bundle has no inference config (configs/inference.json or .yaml)",
            configs / CONFIG_NAMES[0],
        )
    metadata = configs / "metadata.json"
    if not metadata.is_file():
        raise ModelError("bundle has no metadata file", metadata)
    weights = next((models / n for n in WEIGHT_NAMES if (models / n).is_file()), None)
    if weights is None:
        raise ModelError(
            "bundle has no weights (models/model.pt or models/model.ts)", models / WEIGHT_NAMES[0]
        )
    return BundleFiles(root, config, metadata, weights)


def read_metadata(path: Path) -> dict[str, Any]:
    """Read ``metadata.json`` as a dict.

    Raises:
        ModelError: If it is not a JSON object.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"metadata is not valid JSON ({e})", path) from None
    if not isinstance(doc, dict):
        raise ModelError("metadata must hold a JSON object", path)
    return doc


def open_config(files: BundleFiles) -> ConfigParser:
    """Read the inference config (nothing evaluated yet), with ``bundle_root`` set to the folder.

    Raises:
        ModelError: If the file cannot be parsed.
    """
    from monai.bundle import ConfigParser  # all of MONAI (~3 s): only to parse a config

    parser = ConfigParser()
    try:
        parser.read_config(files.config)
    except Exception as e:  # json, yaml or MONAI errors: all mean an unreadable config
        raise ModelError(f"cannot read the config ({error_summary(e)})", files.config) from None
    parser["bundle_root"] = str(files.root)
    return parser


def check_offline(parser: ConfigParser, item: str, path: Path) -> None:
    """Refuse ``item`` if it, or anything it refers to, would download (checked, not run).

    Raises:
        ModelError: Naming the config and the offending entry.
    """
    seen: set[str] = set(_OWN_KEYS)
    pending = [item]
    while pending:
        ident = pending.pop()
        if ident in seen:
            continue
        seen.add(ident)
        for key, text, active in _strings(parser.get(ident), ident):
            if _URL.search(text) or (active and _FETCH.search(text)):
                raise ModelError(
                    f"{key} needs a download ({text[:100]!r}); medverse runs offline", path
                )
            pending.extend(REFERENCE.findall(text))


def _strings(config: Any, ident: str) -> list[tuple[str, str, bool]]:
    """``(id, text, is code)`` of every string in a raw config subtree.

    Code is an expression (``$...``) or a ``_target_``; a truthy ``pretrained`` flag counts
    as code that fetches.
    """
    found: list[tuple[str, str, bool]] = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            sub = f"{ident}#{key}"
            if str(key) in _PRETRAINED_KEYS and value not in (False, None, 0, "", "False"):
                found.append((sub, f"download of pretrained weights ({key}={value})", True))
            elif key == "_target_" and isinstance(value, str):
                found.append((sub, value, True))
            else:
                found += _strings(value, sub)
    elif isinstance(config, list | tuple):
        for n, value in enumerate(config):
            found += _strings(value, f"{ident}#{n}")
    elif isinstance(config, str):
        found.append((ident, config, config.startswith("$")))
    return found


def resolve_value(parser: ConfigParser, ident: str, path: Path) -> Any:
    """Evaluate one config entry (components not instantiated) after the offline check.

    Raises:
        ModelError: If it would download, or fails to evaluate.
    """
    check_offline(parser, ident, path)
    try:
        return parser.get_parsed_content(ident, instantiate=False)
    except Exception as e:  # an expression that fails, or a dangling reference
        raise ModelError(f"cannot read {ident} ({error_summary(e)})", path) from None


def error_summary(error: BaseException) -> str:
    """One line: the exception type and message, at most 300 characters."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]
