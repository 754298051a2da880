"""keep_freed_memory: applied once on Linux/glibc, and left alone when switched off."""

from __future__ import annotations

import sys

import pytest

from medverse.engine.cpu_memory import ENV_SWITCH, keep_freed_memory


def test_switch_off_leaves_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    keep_freed_memory.cache_clear()
    monkeypatch.setenv(ENV_SWITCH, "0")
    try:
        assert keep_freed_memory() is False
    finally:
        keep_freed_memory.cache_clear()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_applied_on_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    keep_freed_memory.cache_clear()
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # once per process (cached)
