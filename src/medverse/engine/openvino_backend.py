"""The exported network in OpenVINO on the CPU, one window per core, float32 unless asked.

The ONNX export (seconds to a minute for a 3D UNet) is made once per weights and plan and
kept outside the repository (`cached_onnx`). OpenVINO compiles it for this CPU's ISA with
one stream per worker, so each window runs on one core as torch's backend does (no
per-operation synchronisation, which costs most on a busy machine). On a CPU with native
bf16, OpenVINO would pick bf16 by itself: the precision is always set explicitly. int8
(`medverse.engine.int8`) is calibrated on the first windows of the first run, checked
against float32 there, and cached beside the export with its verdict.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medverse.core.errors import ConfigError, ModelError
from medverse.core.logging import get_logger
from medverse.engine.cpu_isa import cpu_isa
from medverse.engine.int8 import (
    CALIBRATION_WINDOWS,
    Int8Verdict,
    cached_verdict,
    int8_paths,
    quantize_and_check,
    save_int8,
)
from medverse.models.checkpoint import LoadedModel
from medverse.models.onnx_export import export_onnx

OPENVINO_INSTALL = "pip install openvino==2026.4.1"

_LOG = get_logger(__name__)


def onnx_cache_dir() -> Path:
    """Where exported networks are kept: ``~/.cache/medverse/onnx``."""
    return Path.home() / ".cache" / "medverse" / "onnx"


def cached_onnx(model: LoadedModel, cache_dir: Path | None = None) -> Path:
    """The model's ONNX file, exported on first use and then reused (keyed by weights and plan).

    Raises:
        ModelError: If the network cannot be exported.
    """
    key = hashlib.sha256()
    for part in (model.weights_digest(), model.plan.model_dump_json(), str(model.preset)):
        key.update(part.encode())
    folder = cache_dir or onnx_cache_dir()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(model.preset))  # bundles: "bundle:<name>"
    path = folder / f"{name}-{key.hexdigest()[:20]}.onnx"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    try:  # the TorchScript exporter takes seconds where torch.export takes a minute
        return export_onnx(model, path, exporter="legacy")
    except ModelError:
        return export_onnx(model, path, exporter="auto")


class OpenVinoBackend:
    """The network in OpenVINO's CPU plugin.

    Args:
        onnx: The exported network (`cached_onnx` or ``medverse export``).
        device: Must be the CPU.
        window: ``(in_channels, *roi)`` of one window (the graph is compiled for it).
        dtype: None for float32, ``torch.bfloat16`` (CPUs with native bf16 only) or
            ``torch.int8``: the cached int8 network if its check passed; with none cached,
            the first `CALIBRATION_WINDOWS` windows run in float32 and calibrate it, and the
            rest run in int8 if it agrees with float32 (see `medverse.engine.int8`); a failed
            check keeps float32 (``dtype`` becomes None).
        threads: CPU threads in all (default: torch's thread count).
        workers: Windows run at once, one stream each (default: ``threads``).
        calibration_windows: Float32 windows that calibrate (half) and check (half) int8.

    Raises:
        ConfigError: Off the CPU, or bf16 on a CPU without native bf16.
        ModelError: If openvino is missing or cannot read the file.
    """

    def __init__(
        self,
        onnx: Path,
        device: torch.device,
        *,
        window: tuple[int, ...],
        dtype: torch.dtype | None = None,
        threads: int | None = None,
        workers: int | None = None,
        calibration_windows: int = CALIBRATION_WINDOWS,
    ) -> None:
        if device.type != "cpu":
            raise ConfigError("the openvino backend runs on the CPU; use torch or onnxruntime")
        if dtype not in (None, torch.bfloat16, torch.int8):
            raise ConfigError("the openvino backend runs float32, int8, or bf16 where native")
        self._ov = _openvino()
        self.device = device
        self.dtype = dtype
        self.name = "openvino"
        self.onnx = onnx
        self.threads = int(threads or torch.get_num_threads())
        self.workers = max(1, min(int(workers or self.threads), self.threads))
        self.isa = cpu_isa()
        self.verdict: Int8Verdict | None = cached_verdict(onnx) if dtype == torch.int8 else None
        self._calibration: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._calibration_windows = max(2, calibration_windows)
        source = onnx
        if dtype == torch.int8 and self.verdict is None:
            self.dtype, self._calibration = None, []  # float32 until calibrated and checked
        elif dtype == torch.int8:
            self.dtype = torch.int8 if self.verdict and self.verdict.kept else None
            source = int8_paths(onnx)[0] if self.dtype == torch.int8 else onnx
        if dtype == torch.int8:
            _LOG.info("openvino: %s", self.describe_int8())
        self.network = self._read(source, window)
        self._compile(self.network)
        self.classes = int(self.compiled.outputs[0].get_shape()[1])
        self._out: np.ndarray | None = None

    def _read(self, source: Path, window: tuple[int, ...]) -> Any:
        try:
            network = self._ov.Core().read_model(str(source))
            network.reshape({network.inputs[0].get_any_name(): [1, *window]})
        except Exception as e:  # openvino raises RuntimeError subclasses of its own
            summary = " ".join(str(e).split())[:300]
            raise ModelError(f"OpenVINO cannot read the model ({summary})", source) from None
        return network

    def _compile(self, network: Any) -> None:
        """Compile ``network`` for this CPU and make the request queue (one per stream)."""
        try:
            self.compiled = self._ov.Core().compile_model(network, "CPU", self._config())
        except Exception as e:
            summary = " ".join(str(e).split())[:300]
            raise ModelError(f"OpenVINO cannot compile the model ({summary})", self.onnx) from None
        self._queue = self._ov.AsyncInferQueue(self.compiled, self.workers)
        self._queue.set_callback(self._store)

    def _config(self) -> dict[str, Any]:
        return {
            # int8: the quantised layers run int8, the rest float32
            "INFERENCE_PRECISION_HINT": "bf16" if self.dtype == torch.bfloat16 else "f32",
            "INFERENCE_NUM_THREADS": self.threads,
            "NUM_STREAMS": self.workers,
            # a shared machine: threads pinned to busy cores wait for them
            "ENABLE_CPU_PINNING": False,
        }

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C, *roi)`` float32 of a ``(B, 1, *roi)`` batch, each window on a stream."""
        array = batch.detach().to(torch.float32).contiguous().numpy()
        count = int(array.shape[0])
        self._out = np.empty((count, self.classes, *array.shape[2:]), dtype=np.float32)
        for index in range(count):
            self._queue.start_async({0: array[index : index + 1]}, index)
        self._queue.wait_all()
        out = self._out
        if self._calibration is not None:
            self._calibrate(array, out)
        return torch.from_numpy(out)

    def _calibrate(self, array: np.ndarray, logits: np.ndarray) -> None:
        """Keep float32 windows until there are enough, then quantise, check and cache."""
        assert self._calibration is not None
        for index in range(int(array.shape[0])):
            labels = logits[index].argmax(0).astype(np.uint8)
            self._calibration.append((array[index : index + 1].copy(), labels))
        if len(self._calibration) < self._calibration_windows:
            return
        windows, labels = zip(*self._calibration, strict=True)
        self._calibration = None
        network, verdict = quantize_and_check(
            self.network, list(windows), list(labels), self._labels_of
        )
        save_int8(self.onnx, network, verdict)
        self.verdict = verdict
        _LOG.info("openvino %s", verdict.describe())
        if verdict.kept:
            self.dtype = torch.int8
            self._compile(network)

    def _labels_of(self, network: Any, windows: list[np.ndarray]) -> list[np.ndarray]:
        """The argmax labels of ``network`` (compiled as this backend compiles) on ``windows``."""
        request = (
            self._ov.Core().compile_model(network, "CPU", self._config()).create_infer_request()
        )
        out = []
        for window in windows:
            request.infer({0: window})
            out.append(request.get_output_tensor(0).data[0].argmax(0).astype(np.uint8))
        return out

    def _store(self, request: Any, index: int) -> None:
        assert self._out is not None
        self._out[index] = request.get_output_tensor(0).data[0]

    def describe(self) -> str:
        """E.g. ``openvino float32, AVX2, 2 streams x 1 thread`` (int8: with its verdict)."""
        precision = {torch.bfloat16: "bf16", torch.int8: "int8"}.get(self.dtype or torch.float32)
        precision = precision or "float32"
        per = max(1, self.threads // self.workers)
        line = f"openvino {precision}, {self.isa}, {self.workers} streams x {per} thread(s)"
        status = self.describe_int8()
        return f"{line} ({status})" if status else line

    def describe_int8(self) -> str:
        """Where int8 stands (calibrating, or its verdict); empty when int8 was not asked."""
        if self._calibration is not None:
            return (
                f"int8 asked: calibrating on the first {self._calibration_windows} windows, "
                "float32 until then"
            )
        return self.verdict.describe() if self.verdict else ""


def _openvino() -> Any:
    try:
        return importlib.import_module("openvino")
    except ModuleNotFoundError:
        raise ModelError(
            f"openvino is not installed; install it with: {OPENVINO_INSTALL}"
        ) from None
