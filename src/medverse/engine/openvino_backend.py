"""The exported network in OpenVINO on the CPU, one window per core, float32 unless asked.

The ONNX export (seconds to a minute for a 3D UNet) is made once per weights and plan and
kept outside the repository (`cached_onnx`). OpenVINO compiles it for this CPU's ISA with
one stream per worker, so each window runs on one core as torch's backend does (no
per-operation synchronisation, which costs most on a busy machine). On a CPU with native
bf16, OpenVINO would pick bf16 by itself: the precision is always set explicitly.
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
from medverse.engine.cpu_isa import cpu_isa
from medverse.models.checkpoint import LoadedModel
from medverse.models.onnx_export import export_onnx, weights_digest

OPENVINO_INSTALL = "pip install openvino==2026.4.1"


def onnx_cache_dir() -> Path:
    """Where exported networks are kept: ``~/.cache/medverse/onnx``."""
    return Path.home() / ".cache" / "medverse" / "onnx"


def cached_onnx(model: LoadedModel, cache_dir: Path | None = None) -> Path:
    """The model's ONNX file, exported on first use and then reused (keyed by weights and plan).

    Raises:
        ModelError: If the network cannot be exported.
    """
    key = hashlib.sha256()
    for part in (weights_digest(model.network), model.plan.model_dump_json(), str(model.preset)):
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
        dtype: None for float32, or ``torch.bfloat16`` (CPUs with native bf16 only).
        threads: CPU threads in all (default: torch's thread count).
        workers: Windows run at once, one stream each (default: ``threads``).

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
    ) -> None:
        if device.type != "cpu":
            raise ConfigError("the openvino backend runs on the CPU; use torch or onnxruntime")
        if dtype is not None and dtype != torch.bfloat16:
            raise ConfigError("the openvino backend runs float32, or bf16 where the CPU has it")
        ov = _openvino()
        self.device = device
        self.dtype = dtype
        self.name = "openvino"
        self.threads = int(threads or torch.get_num_threads())
        self.workers = max(1, min(int(workers or self.threads), self.threads))
        self.isa = cpu_isa()
        try:
            network = ov.Core().read_model(str(onnx))
            network.reshape({network.inputs[0].get_any_name(): [1, *window]})
            self.compiled = ov.Core().compile_model(network, "CPU", self._config())
        except Exception as e:  # openvino raises RuntimeError subclasses of its own
            summary = " ".join(str(e).split())[:300]
            raise ModelError(f"OpenVINO cannot compile the model ({summary})", onnx) from None
        self.classes = int(self.compiled.outputs[0].get_shape()[1])
        self._queue = ov.AsyncInferQueue(self.compiled, self.workers)
        self._queue.set_callback(self._store)
        self._out: np.ndarray | None = None

    def _config(self) -> dict[str, Any]:
        return {
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
        return torch.from_numpy(self._out)

    def _store(self, request: Any, index: int) -> None:
        assert self._out is not None
        self._out[index] = request.get_output_tensor(0).data[0]

    def describe(self) -> str:
        """E.g. ``openvino float32, AVX2, 2 streams x 1 thread``."""
        precision = "bf16" if self.dtype == torch.bfloat16 else "float32"
        per = max(1, self.threads // self.workers)
        return f"openvino {precision}, {self.isa}, {self.workers} streams x {per} thread(s)"


def _openvino() -> Any:
    try:
        return importlib.import_module("openvino")
    except ModuleNotFoundError:
        raise ModelError(
            f"openvino is not installed; install it with: {OPENVINO_INSTALL}"
        ) from None
