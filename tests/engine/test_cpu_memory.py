"""keep_freed_memory: off unless asked; applied once on Linux/glibc when asked."""

from __future__ import annotations

import sys

import pytest

from medverse.engine.cpu_memory import ENV_SWITCH, keep_freed_memory


def test_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    keep_freed_memory.cache_clear()
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    try:
        assert keep_freed_memory() is False
    finally:
        keep_freed_memory.cache_clear()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_applied_on_linux_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SWITCH, "1")
    keep_freed_memory.cache_clear()
    try:
        assert keep_freed_memory() is True
        assert keep_freed_memory() is True  # once per process (cached)
    finally:
        keep_freed_memory.cache_clear()
