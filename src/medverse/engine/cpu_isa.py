"""Which vector instructions this CPU has, and which network path runs on it by default.

Read from ``/proc/cpuinfo`` (no torch import, so ``--help`` stays fast), with torch's own
capability table as the fallback off Linux. Measured on a 2-core AVX2-only AMD EPYC with the
brief's UNet (16-256, 96^3 windows, float32, CPU seconds per window, one core): torch eager
0.45, ONNX Runtime (graph optimised) 0.38, OpenVINO 0.23; int8 static quantisation in ONNX
Runtime 0.75-0.88 (its 3D QLinearConv has no fast kernel there), so it is not offered.
"""

from __future__ import annotations

import importlib.util
from enum import StrEnum
from functools import cache
from pathlib import Path


class CpuIsa(StrEnum):
    """The widest vector path this CPU offers to the network's arithmetic."""

    AMX = "AMX"
    AVX512_BF16 = "AVX512-BF16"
    AVX512 = "AVX512"
    AVX2 = "AVX2"
    BASELINE = "baseline"


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (lower case), empty when unknown."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
        return frozenset()
    import torch  # off Linux: torch's table (slower to import)

    caps = torch.cpu.get_capabilities()
    names = {"amx_bf16": "amx_bf16", "avx512_bf16": "avx512_bf16", "avx512_f": "avx512f"}
    found = {flag for key, flag in names.items() if caps.get(key)}
    return frozenset(found | ({"avx2"} if caps.get("avx2") else set()))


def cpu_isa() -> CpuIsa:
    """The ISA class of this CPU (AMX > AVX512-BF16 > AVX512 > AVX2 > baseline)."""
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return CpuIsa.AMX
    if "avx512_bf16" in flags:
        return CpuIsa.AVX512_BF16
    if "avx512f" in flags:
        return CpuIsa.AVX512
    if "avx2" in flags:
        return CpuIsa.AVX2
    return CpuIsa.BASELINE


def has_module(name: str) -> bool:
    """True if ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def default_cpu_backend() -> str:
    """The backend ``auto`` runs on this CPU: ``openvino``, else ``onnxruntime``, else ``torch``.

    The same order on every x86 ISA in float32 (measured on AVX2, see the module docstring);
    bf16 (only on CPUs that compute it natively) is asked for explicitly and runs here too
    (OpenVINO) or in torch's autocast.
    """
    if has_module("openvino"):
        return "openvino"
    if has_module("onnxruntime") and has_module("onnx"):
        return "onnxruntime"
    return "torch"


def cpu_path_summary() -> str:
    """One line for ``--help`` and logs, e.g. ``AVX2 CPU: openvino, float32``."""
    return f"{cpu_isa()} CPU: {default_cpu_backend()}, float32"
