"""Network backends behind one call: torch eager, torch.compile, ONNX Runtime and OpenVINO.

Every backend maps a ``(B, 1, *roi)`` float32 batch on the compute device to ``(B, C, *roi)``
logits on the same device, so the sliding window never knows which one runs. Precision:
``fp32``; ``bf16``/``fp16`` autocast (CUDA, and bf16 on CPUs with native bf16 such as
AVX512-BF16 or AMX); ONNX Runtime runs the exported float32 graph (TensorRT may use fp16);
OpenVINO (CPU) runs it in float32, int8 (quantised on the run's own windows and kept only
if it agrees with float32, `medverse.engine.int8`), or bf16 where native. ``auto`` picks per
device and ISA
(`medverse.engine.cpu_isa.default_cpu_backend`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medverse.core.errors import ConfigError, ModelError
from medverse.engine.cpu_isa import default_cpu_backend
from medverse.models.checkpoint import LoadedModel
from medverse.models.onnx_export import (
    INPUT_NAME,
    ONNX_INSTALL,
    OUTPUT_NAME,
    check_onnx_matches,
    onnx_bytes,
    onnx_metadata,
)


class BackendKind(StrEnum):
    """Which runtime executes the network."""

    AUTO = "auto"
    TORCH = "torch"
    COMPILE = "compile"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"


class NetPrecision(StrEnum):
    """Arithmetic of the network's forward pass."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"


def cpu_has_bf16() -> bool:
    """True if this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def autocast_dtype(device: torch.device, precision: str = NetPrecision.AUTO) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain float32).

    ``auto`` is bf16 (or fp16 where bf16 is missing) on CUDA and float32 on the CPU.

    Raises:
        ConfigError: For fp16 on the CPU (no fast kernels) or an unknown name.
    """
    choice = NetPrecision(precision)
    if choice == NetPrecision.FP32:
        return None
    if choice == NetPrecision.AUTO:
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if choice == NetPrecision.INT8:
        raise ConfigError("int8 runs on the openvino backend (CPU); use --backend openvino")
    if choice == NetPrecision.FP16 and device.type != "cuda":
        raise ConfigError("fp16 runs on CUDA only; use bf16 or fp32 on the CPU")
    return torch.bfloat16 if choice == NetPrecision.BF16 else torch.float16


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads in the calling thread, then restore.

    The setting is per thread (OpenMP), so worker threads and other callers keep theirs.
    """
    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchBackend:
    """The network in PyTorch (eager, or compiled with ``torch.compile``).

    On a CPU with several threads, eager batches are split across worker threads that run
    one window each on one core: about 25% faster than splitting every operation of every
    window across the cores on an idle machine (no per-operation synchronisation), and
    several times faster on a busy one. A batch that is not split runs on the thread count
    torch had when the backend was made (whatever the caller's setting is by then).

    Args:
        network: The network (moved to ``device``, eval mode).
        device: Compute device.
        dtype: Autocast dtype, None for float32.
        compiled: Wrap with ``torch.compile`` (one-off compile cost, then faster windows;
            batches are padded to one size so it compiles once).
        cpu_workers: Worker threads on a CPU (default: torch's thread count; 1 disables).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        device: torch.device,
        *,
        dtype: torch.dtype | None = None,
        compiled: bool = False,
        cpu_workers: int | None = None,
    ) -> None:
        self.device = device
        self.dtype = dtype
        module = network.to(device).eval()
        self.network: Any = torch.compile(module, dynamic=False) if compiled else module
        self.fixed_batch: int | None = None
        self.compiled = compiled
        self.name = BackendKind.COMPILE if compiled else BackendKind.TORCH
        self.threads = torch.get_num_threads()
        workers = cpu_workers if cpu_workers is not None else self.threads
        self.workers = workers if device.type == "cpu" and not compiled else 1
        self._pool: ThreadPoolExecutor | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of the batch (float32, or the autocast dtype)."""
        count = int(batch.shape[0])
        if self.workers > 1:  # a lone window too: one core, no per-operation fork and join
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, initializer=_one_thread)
            parts = torch.tensor_split(batch, min(self.workers, count))
            outs = list(self._pool.map(self._forward, parts))
            return outs[0] if len(outs) == 1 else torch.cat(outs)
        batch = _padded_batch(batch, self.fixed_batch) if self.compiled else batch
        if self.compiled and self.fixed_batch is None:
            self.fixed_batch = count
        with torch_threads(self.threads):
            return self._forward(batch)[:count]

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The network under inference mode and autocast (both are per thread)."""
        context = (
            torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext()
        )
        with torch.inference_mode(), context:
            return self.network(batch)

    def close(self) -> None:
        """Stop the worker threads (they also stop with the process)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _one_thread() -> None:
    """Worker-thread initializer: one intra-op thread per worker (the setting is per thread)."""
    torch.set_num_threads(1)


class OnnxBackend:
    """The exported network in ONNX Runtime.

    Args:
        model: An ONNX file or its bytes (from `medverse.models.onnx_export`).
        device: Where batches come from and logits go (CUDA providers need a CUDA device).
        provider: ``cpu``, ``cuda`` or ``tensorrt`` (falls back to CUDA, then CPU, per node).
        threads: CPU threads for the CPU provider (default: torch's thread count).
        cache_dir: TensorRT engine cache folder (engines build once per batch size).
    """

    def __init__(
        self,
        model: str | Path | bytes,
        device: torch.device,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        ort = _onnxruntime()
        self.device = device
        self.provider = provider
        self.name = BackendKind.ONNXRUNTIME
        self.dtype: torch.dtype | None = None  # the exported graph runs in float32
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        providers = _providers(ort, provider, device, cache_dir)
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            where = None if isinstance(model, bytes) else Path(model)
            summary = " ".join(str(e).split())[:300]
            raise ModelError(f"ONNX Runtime cannot load the model ({summary})", where) from None
        output = self.session.get_outputs()[0]
        self.classes = output.shape[1] if isinstance(output.shape[1], int) else None
        self.fixed_batch: int | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of the batch (float32), on the batch's device."""
        count = int(batch.shape[0])
        if self.provider == "tensorrt":  # one engine per batch shape: keep one shape
            batch = _padded_batch(batch, self.fixed_batch)
            self.fixed_batch = self.fixed_batch or count
        if batch.device.type == "cuda":
            return self._run_on_cuda(batch)[:count]
        array = batch.detach().to(torch.float32).contiguous().numpy()
        (logits,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(np.asarray(logits))[:count]

    def _run_on_cuda(self, batch: torch.Tensor) -> torch.Tensor:
        """Bind device memory in and out: no host round trip."""
        if self.classes is None:
            raise ModelError("the ONNX model's class dimension is not static")
        batch = batch.detach().to(torch.float32).contiguous()
        out = torch.empty(
            (batch.shape[0], self.classes, *batch.shape[2:]),
            dtype=torch.float32,
            device=batch.device,
        )
        binding = self.session.io_binding()
        index = batch.device.index or 0
        binding.bind_input(
            INPUT_NAME, "cuda", index, np.float32, list(batch.shape), batch.data_ptr()
        )
        binding.bind_output(OUTPUT_NAME, "cuda", index, np.float32, list(out.shape), out.data_ptr())
        torch.cuda.current_stream(batch.device).synchronize()
        self.session.run_with_iobinding(binding)
        return out


def resolve_kind(
    device: torch.device, kind: str, precision: str, onnx: object = None
) -> BackendKind:
    """The backend ``kind`` names, with ``auto`` resolved for the device and CPU.

    ``auto`` is torch on CUDA, openvino for int8, openvino for bf16 on a CPU that computes
    it natively (where installed; torch autocast otherwise: the same speed per window, but
    it builds the network, so a bundle's first use imports MONAI), onnxruntime with an ONNX
    file, else this CPU's `default_cpu_backend`.

    Raises:
        ConfigError: For an unknown name.
    """
    try:
        choice = BackendKind(kind)
        wanted = NetPrecision(precision)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if choice != BackendKind.AUTO:
        return choice
    if device.type != "cpu":
        return BackendKind.TORCH
    if wanted == NetPrecision.INT8:
        return BackendKind.OPENVINO
    if wanted == NetPrecision.BF16:
        native = cpu_has_bf16() and default_cpu_backend() == BackendKind.OPENVINO
        return BackendKind.OPENVINO if native and onnx is None else BackendKind.TORCH
    if onnx is not None:
        return BackendKind.ONNXRUNTIME
    return BackendKind(default_cpu_backend())


def make_backend(
    model: LoadedModel,
    device: torch.device,
    *,
    kind: str = BackendKind.TORCH,
    precision: str = NetPrecision.AUTO,
    onnx: str | Path | None = None,
    provider: str | None = None,
) -> Any:
    """Build the backend that runs ``model`` on ``device``.

    Args:
        model: The loaded checkpoint.
        device: Compute device.
        kind: ``auto`` (see `resolve_kind`), ``torch``, ``compile``, ``onnxruntime`` or
            ``openvino``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (torch backends; openvino: fp32,
            int8, or bf16 on CPUs that have it).
        onnx: For ``onnxruntime``/``openvino``: a file from ``medverse export`` (checked
            against the checkpoint's weights and plan); else exported (openvino: once, cached).
        provider: ONNX Runtime provider (``cpu``, ``cuda``, ``tensorrt``); default: ``cuda``
            on a CUDA device, else ``cpu``.

    Raises:
        ConfigError: For an unknown kind or a precision the backend does not offer.
        ModelError: For an ONNX file from another model or a missing runtime.
    """
    choice = resolve_kind(device, kind, precision, onnx)
    wanted = NetPrecision(precision)
    if choice in (BackendKind.TORCH, BackendKind.COMPILE):
        if onnx is not None or provider is not None:
            raise ConfigError(
                f"an ONNX file or provider is for onnxruntime, not the {choice} backend"
            )
        dtype = autocast_dtype(device, wanted)
        return TorchBackend(model.network, device, dtype=dtype, compiled=choice == "compile")
    if choice == BackendKind.OPENVINO:
        return _openvino_backend(model, device, wanted, onnx)
    if wanted not in (NetPrecision.AUTO, NetPrecision.FP32):
        raise ConfigError(
            "onnxruntime runs the exported float32 graph; --precision is for torch/openvino"
        )
    source: Path | bytes
    if onnx is not None:
        source = Path(onnx)
        check_onnx_matches(onnx_metadata(source), model, source)
    else:
        source = onnx_bytes(model)
    chosen = provider or ("cuda" if device.type == "cuda" else "cpu")
    return OnnxBackend(source, device, provider=chosen)


def _openvino_backend(
    model: LoadedModel, device: torch.device, wanted: NetPrecision, onnx: str | Path | None
) -> Any:
    from medverse.engine.openvino_backend import OpenVinoBackend, cached_onnx

    if wanted == NetPrecision.FP16:
        raise ConfigError("the openvino backend runs fp32, int8, or bf16 on CPUs with native bf16")
    if wanted == NetPrecision.BF16 and not cpu_has_bf16():
        raise ConfigError("bf16 needs a CPU with AVX512-BF16 or AMX; this one runs fp32")
    if onnx is not None:
        check_onnx_matches(onnx_metadata(Path(onnx)), model, Path(onnx))
    source = Path(onnx) if onnx is not None else cached_onnx(model)
    window = (model.in_channels, *(int(r) for r in model.plan.patch_size))
    dtype = {NetPrecision.BF16: torch.bfloat16, NetPrecision.INT8: torch.int8}.get(wanted)
    return OpenVinoBackend(source, device, window=window, dtype=dtype)


def _padded_batch(batch: torch.Tensor, size: int | None) -> torch.Tensor:
    """Zero windows appended up to ``size`` (a compiled graph keeps one batch shape)."""
    if size is None or batch.shape[0] >= size:
        return batch
    pad = torch.zeros(
        (size - batch.shape[0], *batch.shape[1:]), dtype=batch.dtype, device=batch.device
    )
    return torch.cat([batch, pad])


def _providers(
    ort: Any, provider: str, device: torch.device, cache_dir: str | Path | None
) -> Sequence[Any]:
    available = set(ort.get_available_providers())
    if provider == "cpu":
        if device.type != "cpu":
            raise ConfigError("the onnxruntime CPU provider needs --device cpu")
        return ["CPUExecutionProvider"]
    if provider not in ("cuda", "tensorrt"):
        raise ConfigError(f"unknown ONNX Runtime provider {provider!r}; use cpu, cuda or tensorrt")
    if device.type != "cuda":
        raise ConfigError(f"the onnxruntime {provider} provider needs a CUDA device")
    cuda = ("CUDAExecutionProvider", {"device_id": device.index or 0})
    if "CUDAExecutionProvider" not in available:
        raise ConfigError("onnxruntime has no CUDA provider here; install onnxruntime-gpu")
    if provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" not in available:
        raise ConfigError("onnxruntime has no TensorRT provider here (onnxruntime-gpu + TensorRT)")
    cache = Path(cache_dir or Path.home() / ".cache" / "medverse" / "tensorrt")
    cache.mkdir(parents=True, exist_ok=True)
    tensorrt = (
        "TensorrtExecutionProvider",
        {
            "device_id": device.index or 0,
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
        },
    )
    return [tensorrt, cuda, "CPUExecutionProvider"]


def _onnxruntime() -> Any:
    try:
        return importlib.import_module("onnxruntime")
    except ModuleNotFoundError:
        raise ModelError(f"onnxruntime is not installed; install it with: {ONNX_INSTALL}") from None
