"""The models a job may name: checkpoint files ``<models_dir>/<name>.pt``, with their metadata."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from medverse.core.errors import MedverseError
from medverse.core.logging import get_logger
from medverse.models.checkpoint import load_checkpoint
from medverse.service.errors import BadRequestError
from medverse.service.models.schemas import ModelPublic

_LOG = get_logger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SUFFIX = ".pt"


class ModelCatalog:
    """Lists the checkpoints of a folder; metadata is read once per file version.

    Args:
        folder: The models folder (``settings.models_dir``).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self._cache: dict[tuple[str, int, int], ModelPublic | None] = {}
        self._lock = threading.Lock()

    def available(self) -> list[ModelPublic]:
        """Every readable checkpoint, by name (unreadable ones are logged and left out)."""
        if not self.folder.is_dir():
            return []
        found = (self._describe(p) for p in sorted(self.folder.glob(f"*{SUFFIX}")))
        return [m for m in found if m is not None]

    def path(self, name: str) -> Path:
        """The checkpoint file of model ``name``.

        Raises:
            BadRequestError: If the name is invalid or no such readable checkpoint exists
                (the message lists the available names).
        """
        if _NAME.match(name):
            path = self.folder / f"{name}{SUFFIX}"
            if path.is_file() and self._describe(path) is not None:
                return path
        available = ", ".join(m.name for m in self.available()) or "none"
        raise BadRequestError(f"unknown model {name!r}; available: {available}")

    def get(self, name: str) -> ModelPublic:
        """The metadata of model ``name`` (see :meth:`path` for errors)."""
        described = self._describe(self.path(name))
        assert described is not None
        return described

    def _describe(self, path: Path) -> ModelPublic | None:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            try:
                model = load_checkpoint(path, map_location="cpu")
            except MedverseError as error:
                _LOG.warning("models folder: skipping %s (%s)", path.name, error.problem)
                self._cache[key] = None
                return None
            described = ModelPublic(
                name=path.name.removesuffix(SUFFIX),
                file=path.name,
                preset=model.preset,
                modality=str(model.plan.modality),
                labels=dict(model.labels),
                target_spacing=model.plan.target_spacing,
                size_bytes=stat.st_size,
                created=str(model.meta.get("created")) if model.meta.get("created") else None,
            )
            self._cache[key] = described
            return described
