"""A throw-away PostgreSQL server for tests: initdb in a temp folder, loopback only, stop by PID."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(os.environ.get("MEDVERSE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "medverse_test"


def available() -> bool:
    """True if the PostgreSQL server binaries are installed."""
    return (BIN / "initdb").is_file() and (BIN / "postgres").is_file()


@dataclass
class PostgresServer:
    """A running server; ``url(db)`` gives a SQLAlchemy URL for one of its databases.

    Attributes:
        folder: Data directory and socket folder (removed on stop).
        port: TCP port on 127.0.0.1.
        password: The superuser's password.
        process: The ``postgres`` process.
    """

    folder: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        """``postgresql+psycopg://`` URL of ``database``."""
        return f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """Create a fresh, empty database and return its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def empty_database(self, url: str) -> str:
        """Drop everything in a database made by `create_database`; return its URL.

        Much cheaper than a new database per test.
        """
        import psycopg

        with psycopg.connect(self._dsn(url.rsplit("/", 1)[1]), autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")
        return url

    def stop(self) -> None:
        """Stop the server by PID and remove its folder.

        SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, as the data is thrown away.
        """
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGQUIT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _dsn(self, database: str) -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname={database} user={SUPERUSER} "
            f"password={self.password} connect_timeout=5"
        )


def start_server() -> PostgresServer:
    """Initdb into a new temp folder and start ``postgres`` on a free loopback port.

    As root, the server runs as the ``postgres`` system user (PostgreSQL refuses root).
    """
    folder = Path(tempfile.mkdtemp(prefix="medverse-pg-"))
    password = secrets.token_urlsafe(16)
    as_user = _drop_root(folder)
    (folder / "pw").write_text(password)
    data = folder / "data"
    subprocess.run(
        [str(BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=scram-sha-256",
         f"--pwfile={folder / 'pw'}", "--encoding=UTF8", "--no-sync"],
        check=True, capture_output=True, **as_user,
    )  # fmt: skip
    (folder / "pw").unlink()
    port = _free_port()
    process = subprocess.Popen(
        [str(BIN / "postgres"), "-D", str(data), "-k", str(folder), "-p", str(port),
         "-h", "127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=(folder / "server.log").open("wb"), **as_user,
    )  # fmt: skip
    server = PostgresServer(folder, port, password, process)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _drop_root(folder: Path) -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    import pwd

    user = pwd.getpwnam("postgres")
    os.chown(folder, user.pw_uid, user.pw_gid)
    return {"user": user.pw_uid, "group": user.pw_gid}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(server: PostgresServer, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            log = (server.folder / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"postgres exited with {server.process.returncode}: {log}")
        try:
            with psycopg.connect(server._dsn("postgres")):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
