"""Deployment: a TLS SuperLink and 3 authenticated SuperNodes as real processes on loopback."""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

APP = Path(__file__).resolve().parents[2] / "src" / "medverse" / "federated" / "app"
BIN = Path(sys.executable).parent
STEP_S = 240  # bound on every wait (process start-up is slow on a loaded 2-core box)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
    )


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key)."""
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (
        _cert("medverse test CA", _name("medverse test CA"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        _cert("localhost", ca.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.crt", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fmt = serialization.PrivateFormat.PKCS8
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    )
    return paths


def make_node_key(folder: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode auth key pair (EC P-384, OpenSSH format, as flwr 1.41 reads it)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / name, folder / f"{name}.pub"
    fmt = serialization.PrivateFormat.OpenSSH
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    )
    ssh = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    public.write_bytes(key.public_key().public_bytes(*ssh))
    return private, public


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = STEP_S) -> None:
    """Poll ``check`` every half second; fail naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


class Processes:
    """Starts processes in their own sessions, logs each to a file, stops all by PID."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``args`` with its output in ``<name>.log``."""
        with (self.folder / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.folder, start_new_session=True,
            )  # fmt: skip
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        """Everything ``name`` has written so far."""
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` and its children (its session), as a crashed site."""
        proc = self.started[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def stop_all(self) -> None:
        """SIGTERM every process group still running, then SIGKILL what is left."""
        for proc in self.started.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.started.items():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill(name)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Process runner with Flower offline and its home/state in ``tmp_path``."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    }
    runner = Processes(tmp_path, env)
    try:
        yield runner
    finally:
        runner.stop_all()


def flwr_cli(env: dict[str, str], capfd: pytest.CaptureFixture[str], *args: str) -> dict:
    """Run the ``flwr`` CLI (in this process, to skip a slow start-up) and parse its JSON."""
    from flwr.cli.app import app
    from typer.testing import CliRunner

    capfd.readouterr()
    result = CliRunner().invoke(app, [*args, "--format", "json"], env=env)
    output = result.output + capfd.readouterr().out  # flwr prints JSON past the runner
    assert result.exit_code == 0, output
    return dict(json.loads(output[output.index("{") :]))


def online_nodes(env: dict[str, str], capfd: pytest.CaptureFixture[str]) -> int:
    """SuperNodes the SuperLink lists as online."""
    nodes = flwr_cli(env, capfd, "supernode", "ls", "test")["nodes"]
    return sum(1 for n in nodes if n["status"] == "online")


def start_superlink(processes: Processes, tmp_path: Path, port: int) -> None:
    """SuperLink with TLS and SuperNode authentication, state in ``tmp_path``."""
    ca, cert, key = make_tls(tmp_path)
    processes.start(
        "superlink",
        ["flower-superlink", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
         "--ssl-ca-certfile", str(ca), "--enable-supernode-auth", "--host", "127.0.0.1",
         "--port", str(port), "--database", str(tmp_path / "state.db"),
         "--disable-runtime-dependency-installation"],
    )  # fmt: skip
    home = Path(processes.env["FLWR_HOME"])
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\n'
        f'address = "127.0.0.1:{port}"\nroot-certificates = "{ca}"\n'
    )
    wait_for(lambda: "Uvicorn running on https://" in processes.log("superlink"), "SuperLink")


def start_supernode(processes: Processes, name: str, key: Path, port: int, site: int) -> None:
    """A SuperNode for site ``site`` that trusts the test CA and signs with ``key``."""
    processes.start(
        name,
        ["flower-supernode", "--superlink", f"127.0.0.1:{port}",
         "--root-certificates", str(processes.folder / "ca.crt"),
         "--auth-supernode-private-key", str(key), "--node-config", f"partition-id={site}",
         "--port", str(free_port()), "--max-retries", "3", "--max-wait-time", "60"],
    )  # fmt: skip


# In the default suite (`make test`, #14): 143 s on 2 cores at load ~3, ~4 min at load 10;
# >= 60 s of it is Flower's offline detection of the killed site.
def test_tls_superlink_three_sites_refuses_a_stranger_and_survives_a_killed_site(
    shared_data: Path, tmp_path: Path, processes: Processes, capfd: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    start_superlink(processes, tmp_path, port)
    keys = [make_node_key(tmp_path, f"site{i}") for i in range(3)]
    for _, public in keys:  # the federation's operator registers each hospital's public key
        flwr_cli(processes.env, capfd, "supernode", "register", str(public), "test")
    stranger, _ = make_node_key(tmp_path, "stranger")  # never registered
    start_supernode(processes, "stranger", stranger, port, site=0)
    for i, (private, _) in enumerate(keys):
        start_supernode(processes, f"site{i}", private, port, site=i)

    processes.started["stranger"].wait(timeout=STEP_S)
    assert processes.started["stranger"].returncode != 0
    assert "Failed to activate SuperNode" in processes.log("stranger")
    assert "No SuperNode found with the given public key" in processes.log("superlink")
    wait_for(lambda: online_nodes(processes.env, capfd) == 3, "3 SuperNodes online")

    out = tmp_path / "out"
    config = (
        f"data-root='{shared_data / 'uci_heart_disease'}' out-dir='{out}' "
        "sites=3 rounds=3 epochs=1 min-nodes=2"
    )
    flwr_cli(processes.env, capfd, "run", str(APP), "test", "--run-config", config)
    # Site 2 crashes (SIGKILL, with its ClientApp) as soon as round 2 reaches it.
    trains = lambda: processes.log("site2").count("Receiving: train message")  # noqa: E731
    wait_for(lambda: trains() >= 2, "round 2's train message at site 2")
    processes.kill("site2")
    wait_for(lambda: (out / "global_model.pt").exists(), "the run to finish", timeout=2 * STEP_S)

    with (out / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    sites_per_round = {r: [x["site"] for x in rows if x["round"] == r] for r in ("1", "2", "3")}
    assert sites_per_round["1"] == ["cleveland", "hungarian", "switzerland", "global"]
    assert sites_per_round["2"] == ["cleveland", "hungarian", "global"]  # round 2 aggregated 2
    assert sites_per_round["3"] == ["cleveland", "hungarian", "global"]  # went on without it
    payload = torch.load(out / "global_model.pt", weights_only=True)
    assert payload["format"] == "medverse-fl-heart"
    assert float(rows[-1]["auroc"]) > 0.7
