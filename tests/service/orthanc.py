"""A throw-away Orthanc PACS (with its DICOMweb plugin) for tests, reachable on loopback only.

Orthanc 1.10 (Debian 12) cannot bind to one address: it listens on every interface. As root,
the fixture therefore runs it inside a private network namespace that holds only ``lo``, and
bridges one loopback port of the test's namespace to it (a small in-process TCP relay whose
connections into the namespace are opened by a thread that has joined it). Without root (no
namespaces) Orthanc runs in the test's namespace with ``RemoteAccessAllowed`` false on a free
high port. Its DICOM (DIMSE) server is disabled either way: only HTTP is used. It is stopped by
PID, and its namespace and folder are removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BINARY = Path(os.environ.get("MEDVERSE_TEST_ORTHANC", "/usr/sbin/Orthanc"))
PLUGIN_CANDIDATES = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)
PORT_IN_NAMESPACE = 8042
_CLONE_NEWNET = 0x40000000


def plugin() -> Path | None:
    """The DICOMweb plugin library, if installed."""
    return next((p for p in PLUGIN_CANDIDATES if p.exists()), None)


def available() -> bool:
    """True if Orthanc and its DICOMweb plugin are installed."""
    return BINARY.is_file() and plugin() is not None


@dataclass
class OrthancServer:
    """A running Orthanc; ``url`` is its REST root and ``dicomweb`` its DICOMweb root.

    Attributes:
        folder: Configuration, storage and log (removed on stop).
        process: The Orthanc process.
        port: The loopback port the tests use.
        namespace: The network namespace Orthanc runs in (None: the test's own).
        bridge: The loopback relay into the namespace, if any.
    """

    folder: Path
    process: subprocess.Popen[bytes]
    port: int
    namespace: str | None
    bridge: _Bridge | None = None

    @property
    def url(self) -> str:
        """The REST API root."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.url}/dicom-web"

    def upload(self, files: Iterable[Path]) -> int:
        """Store DICOM files through Orthanc's REST API; return how many it accepted."""
        stored = 0
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            for path in files:
                answer = client.post("/instances", content=path.read_bytes())
                answer.raise_for_status()
                stored += 1
        return stored

    def clear(self) -> None:
        """Delete every patient (and so every study) stored in Orthanc."""
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            for patient in client.get("/patients").json():
                client.delete(f"/patients/{patient}").raise_for_status()

    def stop(self) -> None:
        """Stop Orthanc by PID (SIGTERM, then SIGKILL), then remove its namespace and folder."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.bridge is not None:
            self.bridge.close()
        if self.namespace is not None:
            subprocess.run(["ip", "netns", "delete", self.namespace], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self) -> str:
        """The end of Orthanc's log (for failure messages)."""
        path = self.folder / "orthanc.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def namespaces_usable() -> bool:
    """True when this process may create network namespaces (root with ``ip``)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def start_server() -> OrthancServer:
    """Start Orthanc with the DICOMweb plugin on loopback; wait until it answers.

    Raises:
        RuntimeError: If Orthanc exits or does not answer within 60 s (with its log).
    """
    folder = Path(tempfile.mkdtemp(prefix="medverse-orthanc-"))
    namespace = _make_namespace() if namespaces_usable() else None
    port = PORT_IN_NAMESPACE if namespace else _free_port()
    config = folder / "orthanc.json"
    config.write_text(json.dumps(_config(folder, port), indent=2))
    command = [str(BINARY), str(config)]
    if namespace:
        command = ["ip", "netns", "exec", namespace, *command]
    with (folder / "orthanc.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = OrthancServer(folder, process, port, namespace)
    try:
        if namespace:
            server.bridge = _Bridge(namespace, port)
            server.port = server.bridge.port
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _config(folder: Path, port: int) -> dict[str, object]:
    storage = folder / "storage"
    return {
        "Name": "medverse-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "Plugins": [str(plugin())],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "SyncStorageArea": False,  # throw-away storage: no fsync per stored file
        "ConcurrentJobs": 1,
        "SaveJobs": False,
        "HttpTimeout": 30,
    }


def _make_namespace() -> str:
    name = f"medverse-orthanc-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(
            ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
            check=True,
            capture_output=True,
        )
    except BaseException:
        subprocess.run(["ip", "netns", "delete", name], check=False)
        raise
    return name


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(server: OrthancServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"Orthanc exited with {server.process.returncode}: {server.log_tail()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/system", timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Orthanc did not answer in {timeout} s: {server.log_tail()}")
        time.sleep(0.2)


@dataclass
class _Bridge:
    """Relays connections from a port on this namespace's loopback to one inside ``namespace``.

    The listening socket is made here (this namespace); the thread that accepts joins the
    target namespace first (``setns`` acts on the calling thread only), so the sockets it
    opens to the target live there.
    """

    namespace: str
    target_port: int
    port: int = 0
    _listener: socket.socket = field(init=False)
    _closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        joined = threading.Event()
        errors: list[BaseException] = []
        threading.Thread(
            target=self._accept, args=(joined, errors), name="orthanc-bridge", daemon=True
        ).start()
        joined.wait(10)
        if errors:
            raise RuntimeError(f"cannot join network namespace {self.namespace}: {errors[0]}")

    def close(self) -> None:
        """Stop accepting (relays in flight end with their connections)."""
        self._closed.set()
        self._listener.close()

    def _accept(self, joined: threading.Event, errors: list[BaseException]) -> None:
        try:
            _join_namespace(self.namespace)
        except OSError as error:
            errors.append(error)
            joined.set()
            return
        joined.set()
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            threading.Thread(target=_relay, args=(client, upstream), daemon=True).start()


def _join_namespace(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
    finally:
        os.close(fd)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {a: b, b: a}
    selector = selectors.DefaultSelector()
    for sock in peers:
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delays per hop
        selector.register(sock, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in selector.select(timeout=60):
                source = key.fileobj
                assert isinstance(source, socket.socket)
                data = source.recv(1 << 16)
                if not data:
                    return
                peers[source].sendall(data)
    except OSError:
        return
    finally:
        selector.close()
        a.close()
        b.close()
