"""ONNX export of a checkpoint's network, with the plan and a weights digest inside the file.

The graph takes ``image`` ``(batch, in_channels, *patch_size)`` float32 and returns ``logits``
``(batch, classes, *patch_size)``; the batch dimension is dynamic. The file's metadata holds
the plan (JSON), the labels, the preset and a SHA-256 of the weights, so a runtime can refuse
an ONNX file that was exported from another model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from medverse.core.errors import ModelError
from medverse.io.atomic import atomic_path
from medverse.models.checkpoint import LoadedModel, state_digest

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
OPSET = 18
MAX_BATCH = 1024
ONNX_INSTALL = "pip install onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.32.0"

META_FORMAT = "medverse.format"
META_PLAN = "medverse.plan"
META_LABELS = "medverse.labels"
META_PRESET = "medverse.preset"
META_WEIGHTS = "medverse.weights_sha256"
FORMAT = "medverse-onnx-1"


def weights_digest(network: torch.nn.Module) -> str:
    """SHA-256 over the network's parameters and buffers (names and float32 bytes, sorted)."""
    return state_digest(network.state_dict())


def onnx_bytes(model: LoadedModel, *, exporter: str = "auto") -> bytes:
    """The model's network as a serialised ONNX model with medverse metadata.

    Args:
        model: A loaded checkpoint (or bundle).
        exporter: ``dynamo`` (torch.export; needs onnxscript), ``legacy`` (TorchScript-based;
            also exports TorchScript networks) or ``auto`` (dynamo when possible).

    Raises:
        ModelError: If onnx is not installed or the network cannot be exported.
    """
    onnx = _require("onnx")
    network = model.network.to("cpu").eval()
    example = torch.zeros((1, model.in_channels, *model.plan.patch_size), dtype=torch.float32)
    use_dynamo = exporter == "dynamo" or (
        exporter == "auto"
        and not isinstance(network, torch.jit.ScriptModule)
        and importlib.util.find_spec("onnxscript") is not None
    )
    try:
        with _quiet_exporter():
            raw = _dynamo(network, example) if use_dynamo else _legacy(network, example)
    except ModelError:
        raise
    except Exception as e:  # the exporters raise many types for unsupported operators
        summary = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise ModelError(f"the network cannot be exported to ONNX ({summary})") from None
    proto = onnx.load_from_string(raw)
    metadata = {
        META_FORMAT: FORMAT,
        META_PLAN: model.plan.model_dump_json(),
        META_LABELS: json.dumps({str(k): v for k, v in model.labels.items()}),
        META_PRESET: str(model.preset),
        META_WEIGHTS: weights_digest(network),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(proto.SerializeToString())


def export_onnx(model: LoadedModel, path: str | Path, *, exporter: str = "auto") -> Path:
    """Write the model as one self-contained ONNX file, atomically (see `onnx_bytes`)."""
    path = Path(path)
    data = onnx_bytes(model, exporter=exporter)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def onnx_metadata(source: str | Path | bytes) -> dict[str, str]:
    """The metadata properties of an ONNX file (or serialised model).

    Raises:
        ModelError: If the file is missing or not an ONNX model.
    """
    onnx = _require("onnx")
    where = None if isinstance(source, bytes) else Path(source)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        proto = onnx.load_from_string(data)
    except FileNotFoundError:
        raise ModelError("ONNX file not found", where) from None
    except Exception as e:  # protobuf decode errors have no common public type
        raise ModelError(f"not a readable ONNX model ({type(e).__name__})", where) from None
    return {entry.key: entry.value for entry in proto.metadata_props}


def check_onnx_matches(metadata: dict[str, str], model: LoadedModel, path: str | Path) -> None:
    """Refuse an ONNX file exported from another model (other weights or plan).

    Raises:
        ModelError: Naming the ONNX file and what differs.
    """
    if metadata.get(META_FORMAT) != FORMAT:
        raise ModelError("not exported by `medverse export` (no medverse metadata)", path)
    if metadata.get(META_WEIGHTS) != model.weights_digest():
        raise ModelError("exported from other weights than this checkpoint", path)
    if json.loads(metadata.get(META_PLAN, "{}")) != json.loads(model.plan.model_dump_json()):
        raise ModelError("exported with another plan than this checkpoint's", path)


def check_export(model: LoadedModel, path: str | Path, *, tolerance: float = 1e-3) -> float:
    """Run one seeded random window through ONNX Runtime (CPU) and torch; return max |diff|.

    Raises:
        ModelError: If the logits differ by more than ``tolerance`` times their largest
            magnitude (at least 1), naming the file.
    """
    ort = _require("onnxruntime")
    generator = torch.Generator().manual_seed(0)
    window = torch.randn((1, model.in_channels, *model.plan.patch_size), generator=generator)
    with torch.inference_mode():
        expected = model.network.to("cpu").eval()(window).float().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (found,) = session.run([OUTPUT_NAME], {INPUT_NAME: window.numpy()})
    difference = float(abs(found - expected).max())
    if difference > tolerance * max(1.0, float(abs(expected).max())):
        raise ModelError(f"ONNX Runtime differs from torch by {difference:.3g}", path)
    return difference


def _dynamo(network: torch.nn.Module, example: torch.Tensor) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.onnx.export(
        network,
        (example,),
        None,
        dynamo=True,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        external_data=False,
        verbose=False,
    )
    assert program is not None
    return bytes(program.model_proto.SerializeToString())


def _legacy(network: torch.nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        network,
        (example,),
        buffer,  # type: ignore[arg-type]  # the legacy exporter writes to file objects
        dynamo=False,
        opset_version=17,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' progress prints and harmless warnings (torchvision, instance norm)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._export", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _require(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise ModelError(f"{name} is not installed; install it with: {ONNX_INSTALL}") from None
