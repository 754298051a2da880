"""The one checkpoint format: a torch.save'd dict of plain types and tensors, loaded safely."""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import ValidationError

import medverse
from medverse.core.errors import ConfigError, ModelError
from medverse.core.registry import ModelPreset
from medverse.core.volume import LabelMap, Volume
from medverse.io.atomic import atomic_path
from medverse.models.factory import resolve_preset
from medverse.models.orientation import back_to_grid, to_orientation
from medverse.preprocessing.fingerprint import first_error
from medverse.preprocessing.plan import Plan

FORMAT = "medverse-checkpoint"
FORMAT_VERSION = 1

V = TypeVar("V", bound=Volume)


NetworkBuilder = Callable[[], torch.nn.Module]
"""Builds a model's network (with its weights, in eval mode) when it is first needed."""


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and values (floats as float32 bytes), sorted by name.

    A network's ``state_dict()`` and the state dict it was loaded from (strictly) give the
    same digest: the export cache's key, known without building the network.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        data = tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else None)
        digest.update(data.contiguous().numpy().tobytes())
    return digest.hexdigest()


class LoadedModel:
    """A network restored from a checkpoint, ready for inference.

    The network may be built lazily: a run whose network comes from the export cache
    (OpenVINO) never builds it, and so never imports MONAI (about 3 s of start-up).

    Attributes:
        plan: The preprocessing plan it was trained with.
        labels: Label value -> name, background excluded.
        preset: The model preset name.
        meta: Everything else stored: format_version, in/out channels, versions, created,
            extra, preset_spec and the file path.
        orientation: Axis codes (e.g. ``"RAS"``) the network was trained in: every input is
            reoriented to them exactly (flips and axis swaps) and the labels put back; None
            takes any grid as it is.

    Args:
        network: The network (eval mode, on its device), or a `NetworkBuilder` that makes it
            on first use of `network`.
        plan: See Attributes.
        labels: See Attributes.
        preset: See Attributes.
        meta: See Attributes.
        orientation: See Attributes.
        digest: `state_digest` of the weights when known without the network (lazy models).
    """

    def __init__(
        self,
        network: torch.nn.Module | NetworkBuilder,
        plan: Plan,
        labels: dict[int, str],
        preset: str,
        meta: dict[str, Any] | None = None,
        orientation: str | None = None,
        *,
        digest: str | None = None,
    ) -> None:
        self._network: torch.nn.Module | None = None
        self._builder: NetworkBuilder | None = None
        if isinstance(network, torch.nn.Module):
            self._network = network
        else:
            self._builder = network
        self.plan = plan
        self.labels = labels
        self.preset = preset
        self.meta: dict[str, Any] = dict(meta or {})
        self.orientation = orientation
        self._digest = digest

    @property
    def network(self) -> torch.nn.Module:
        """The network, in eval mode (built now if it was loaded lazily).

        Raises:
            ModelError: Naming the file, if a lazily loaded network cannot be built.
        """
        if self._network is None:
            assert self._builder is not None
            self._network = self._builder()
            self._builder = None
        return self._network

    @network.setter
    def network(self, network: torch.nn.Module) -> None:
        self._network, self._builder, self._digest = network, None, None

    @property
    def network_built(self) -> bool:
        """False while a lazily loaded network has not been needed yet."""
        return self._network is not None

    def weights_digest(self) -> str:
        """`state_digest` of the weights (without building a lazily loaded network)."""
        if self._digest is None:
            self._digest = state_digest(self.network.state_dict())
        return self._digest

    @property
    def in_channels(self) -> int:
        """Input channels the network expects."""
        return int(self.meta["in_channels"])

    @property
    def out_channels(self) -> int:
        """Output channels (classes including background)."""
        return int(self.meta["out_channels"])

    @property
    def title(self) -> str:
        """The algorithm name outputs record (e.g. in a DICOM SEG): ``medverse <plan preset>``."""
        return f"medverse {self.plan.preset}"

    def oriented(self, volume: V) -> V:
        """The volume with its axes in the model's orientation (exact; unchanged if none)."""
        return volume if self.orientation is None else to_orientation(volume, self.orientation)

    def restored(self, labels: LabelMap, like: Volume) -> LabelMap:
        """Labels predicted on ``oriented(like)``, put back onto ``like``'s grid (exact)."""
        return labels if self.orientation is None else back_to_grid(labels, like)


def save_checkpoint(
    path: str | Path,
    network: torch.nn.Module,
    plan: Plan,
    *,
    preset: str | ModelPreset,
    labels: Mapping[int, str],
    extra: Mapping[str, Any] | None = None,
    in_channels: int | None = None,
    out_channels: int | None = None,
    orientation: str | None = None,
) -> Path:
    """Write a checkpoint atomically: weights, plan, labels, preset and versions in one file.

    Args:
        path: Target file (conventionally ``*.pt``).
        network: The trained network (a DDP or torch.compile wrapper is unwrapped).
        plan: Its preprocessing plan.
        preset: The preset it was built from.
        labels: Label value -> name, background excluded.
        extra: Plain-typed extras (epoch, metrics, ...): str, int, float, bool, None, lists,
            tuples, dicts and tensors only.
        in_channels: Input channels, when the network does not carry an ``in_channels``
            attribute (networks from `build_network` do).
        out_channels: Output channels, likewise.
        orientation: Axis codes (``"RAS"``) the network was trained in, when its training
            images all had them; inference then reorients every input to them.

    Returns:
        The written path.

    Raises:
        ModelError: If the payload would not load safely (``extra`` holds other types) or the
            channel counts are unknown.
    """
    path = Path(path)
    module = _unwrap(network)
    spec = resolve_preset(preset)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "plan": plan.model_dump(mode="json"),
        "preset": spec.name,
        "preset_spec": {"name": spec.name, "network": spec.network, "kwargs": dict(spec.kwargs)},
        "labels": {int(k): str(v) for k, v in labels.items()},
        "in_channels": _channels(module, "in_channels", in_channels, path),
        "out_channels": _channels(module, "out_channels", out_channels, path),
        "versions": {
            "medverse": str(medverse.__version__),
            "torch": str(torch.__version__),
            "monai": _monai_version(),
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "extra": dict(extra or {}),
    }
    if orientation is not None:
        payload["orientation"] = _orientation(orientation, path)
    buffer = io.BytesIO()
    try:
        torch.save(payload, buffer)
        torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=True)
    except (pickle.PicklingError, pickle.UnpicklingError, AttributeError, TypeError) as e:
        summary = " ".join(str(e).split())[:200]
        raise ModelError(
            f"checkpoint would not load safely: extra must hold plain types only ({summary})", path
        ) from None
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, lazy: bool = False
) -> LoadedModel:
    """Load a checkpoint safely (``weights_only=True``) and rebuild its network.

    Args:
        path: A file written by `save_checkpoint`.
        map_location: Device for the network (``"cpu"``, ``"cuda"``, ...).
        lazy: Build the network only when it is first used (see `LoadedModel`); a weights
            mismatch is then reported at that moment, with the same error.

    Raises:
        ModelError: Naming the file, if it is missing, unreadable or unsafe, not a medverse
            checkpoint, of an unsupported format version, or its weights do not fit the
            network its preset describes.
    """
    path = Path(path)
    payload = _read_payload(path)
    _check_format(payload, path)
    try:
        plan = Plan.model_validate(payload["plan"])
        spec = _stored_preset(payload)
    except ValidationError as e:
        raise ModelError(f"checkpoint holds an invalid plan ({first_error(e)})", path) from None
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        raise ModelError(f"checkpoint cannot rebuild its network ({e})", path) from None

    def build() -> torch.nn.Module:
        return _rebuild(payload, spec, path).to(map_location).eval()

    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "plan", "labels")}
    meta["path"] = str(path)
    labels = {int(k): str(v) for k, v in payload.get("labels", {}).items()}
    orientation = _orientation(payload.get("orientation"), path)
    state = payload["state_dict"]
    if not isinstance(state, Mapping):
        raise ModelError(f"checkpoint's state_dict is a {type(state).__name__}", path)
    return LoadedModel(
        build if lazy else build(),
        plan=plan,
        labels=labels,
        preset=spec.name,
        meta=meta,
        orientation=orientation,
        digest=state_digest(state) if lazy else None,
    )


def _rebuild(payload: Mapping[str, Any], spec: ModelPreset, path: Path) -> torch.nn.Module:
    """The preset's network with the checkpoint's weights (strict)."""
    from medverse.models.factory import build_network  # imports MONAI: only when needed

    try:
        network = build_network(spec, int(payload["in_channels"]), int(payload["out_channels"]))
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        raise ModelError(f"checkpoint cannot rebuild its network ({e})", path) from None
    try:
        network.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, AttributeError, TypeError) as e:
        summary = " ".join(str(e).split())[:400]
        raise ModelError(
            f"weights do not match the {spec.name!r} network ({summary})", path
        ) from None
    return network


def _monai_version() -> str:
    import monai  # the version a checkpoint records; only when one is written

    return str(monai.__version__)


def _orientation(value: object, path: Path) -> str | None:
    """A stored orientation: None, or three axis codes naming each of L/R, A/P, S/I once."""
    if value is None:
        return None
    codes = str(value).upper()
    axes = {"L": 0, "R": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    if len(codes) != 3 or sorted(axes.get(c, -1) for c in codes) != [0, 1, 2]:
        raise ModelError(f"checkpoint holds an invalid orientation {str(value)[:16]!r}", path)
    return codes


def _read_payload(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError("checkpoint file not found", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = " ".join(str(e).split())
        if "Unsupported global" in text:
            raise ModelError(
                "not a medverse checkpoint: it holds objects a safe load refuses "
                "(only plain types and tensors are allowed)",
                path,
            ) from None
        raise ModelError("not a readable checkpoint (corrupt or not a torch file)", path) from None
    except Exception as e:  # torch.load raises many types on truncated or foreign bytes
        text = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise ModelError(
            f"not a readable checkpoint (truncated or not torch: {text})", path
        ) from None
    if not isinstance(payload, dict):
        raise ModelError(f"not a medverse checkpoint (holds a {type(payload).__name__})", path)
    return payload


def _check_format(payload: Mapping[str, Any], path: Path) -> None:
    if payload.get("format") != FORMAT:
        raise ModelError(f"not a medverse checkpoint (no 'format': {FORMAT!r} entry)", path)
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"checkpoint format version {version!r} is not supported "
            f"(this medverse reads version {FORMAT_VERSION})",
            path,
        )
    missing = [
        k
        for k in ("state_dict", "plan", "preset", "in_channels", "out_channels")
        if k not in payload
    ]
    if missing:
        raise ModelError(f"checkpoint lacks {', '.join(missing)}", path)


def _stored_preset(payload: Mapping[str, Any]) -> ModelPreset:
    spec = payload.get("preset_spec")
    if isinstance(spec, dict):
        return ModelPreset(str(spec["name"]), str(spec["network"]), dict(spec["kwargs"]))
    return resolve_preset(str(payload["preset"]))


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """Return the plain module under a torch.compile and/or (Distributed)DataParallel wrapper."""
    module = network
    compiled = getattr(module, "_orig_mod", None)
    if isinstance(compiled, torch.nn.Module):
        module = compiled
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    if isinstance(module, wrappers):
        module = module.module
    compiled = getattr(module, "_orig_mod", None)
    return compiled if isinstance(compiled, torch.nn.Module) else module


def _channels(module: torch.nn.Module, name: str, given: int | None, path: Path) -> int:
    value = given if given is not None else getattr(module, name, None)
    if not isinstance(value, int) or value < 1:
        raise ModelError(f"cannot tell the network's {name}; pass {name}=", path)
    return value
