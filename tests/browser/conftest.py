"""Browser fixtures: a seeded service in its own process, and headless Debian Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from medverse.core.settings import Settings
from medverse.service.static import WEB_DIST
from tests.browser.seed import Seeded, seed

CHROMIUM = Path(os.environ.get("MEDVERSE_CHROMIUM", "/usr/bin/chromium"))
# No network, no GPU: software WebGL2 (SwiftShader through ANGLE) for NiiVue and three.js.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
]


@dataclass
class Service:
    """A ``medverse serve`` process on a free loopback port; ``restart`` keeps its data dir."""

    settings: Settings
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        folders = ["--data-dir", str(self.settings.data_dir)]
        folders += ["--models-dir", str(self.settings.models_dir)]
        serve = ["serve", "--no-worker", *folders, "--port", str(self.port)]
        command = [sys.executable, "-m", "medverse.cli", *serve]
        env = {**os.environ, "MEDVERSE_LOG_LEVEL": "WARNING"}
        self.process = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 180  # a loaded 2-core CI box needs more than a minute
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"medverse serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("medverse serve did not answer within 180 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def seeded_settings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Seeded]:
    """A data dir with the sample CT, three users and a finished job (about 20 s, once)."""
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail(f"the web viewer is not built ({WEB_DIST}); run `make web`")
    root = tmp_path_factory.mktemp("browser-service")
    (root / "models").mkdir()
    settings = Settings(data_dir=root / "data", models_dir=root / "models")
    return settings, seed(settings)


@pytest.fixture(scope="session")
def service(seeded_settings: tuple[Settings, Seeded]) -> Iterator[Service]:
    """The seeded service, running."""
    server = Service(seeded_settings[0], free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seeded(seeded_settings: tuple[Settings, Seeded]) -> Seeded:
    """Ids and tokens of the seeded data."""
    return seeded_settings[1]


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (no browser download).

    Package scope: Playwright's sync API keeps an event loop running in the main thread, so it
    is stopped after the browser tests, before tests that run their own asyncio loops.
    """
    if not CHROMIUM.is_file() or shutil.which(str(CHROMIUM)) is None:
        pytest.fail(f"Chromium not found at {CHROMIUM}; run `make system-deps` (apt chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()
