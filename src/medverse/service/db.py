"""The service database: one engine per app, SQLite (WAL) by default or PostgreSQL, same code."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.schema import CreateColumn

from medverse.core.errors import ConfigError
from medverse.core.logging import get_logger
from medverse.core.settings import Settings
from medverse.service.tables import Base

_LOG = get_logger(__name__)
_IMMEDIATE = "medverse_sqlite_immediate"
_SCHEMA_LOCK = "medverse-schema"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def database_url(settings: Settings) -> URL:
    """Return the SQLAlchemy URL: ``settings.database_url`` or the SQLite file in the data dir.

    A bare ``postgresql://`` URL is given the psycopg (version 3) driver.

    Raises:
        ConfigError: If the URL is not SQLite or PostgreSQL.
    """
    if not settings.database_url:
        return make_url(f"sqlite:///{Path(settings.data_dir).expanduser() / 'medverse.db'}")
    url = make_url(settings.database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"MEDVERSE_DATABASE_URL must be sqlite:///... or postgresql+psycopg://..., "
            f"not {url.get_backend_name()}"
        )
    return url


class Database:
    """One engine and its sessions; transactions that write take the right lock per backend.

    On SQLite every transaction is opened explicitly: ``reading()`` with ``BEGIN`` and
    ``writing()`` with ``BEGIN IMMEDIATE`` (the write lock up front, so a read-then-write
    transaction never fails on a stale snapshot); writers wait up to the busy timeout. On
    PostgreSQL ``writing(lock=key)`` also takes a transaction-scoped advisory lock on ``key``.

    Args:
        url: The database URL.
    """

    def __init__(self, url: URL) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False
        )

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads; rolled back at the end."""
        with self._read() as session:
            yield session

    @contextmanager
    def writing(self, lock: str | None = None) -> Iterator[Session]:
        """A session committed at the end (rolled back on error), holding the write lock.

        Args:
            lock: A name to serialise on (PostgreSQL advisory lock; SQLite already holds
                the whole-database write lock).
        """
        with self._write() as session, session.begin():
            if lock is not None:
                self.lock(session, lock)
            yield session

    def lock(self, session: Session, name: str) -> None:
        """Serialise on ``name`` until the transaction ends (a no-op on SQLite, see above)."""
        if not self.is_sqlite:
            session.execute(select(func.pg_advisory_xact_lock(advisory_key(name))))

    def create_schema(self) -> None:
        """Create missing tables (and the audit triggers), safe against concurrent starts."""
        with self.engine.execution_options(**{_IMMEDIATE: True}).begin() as connection:
            if not self.is_sqlite:
                key = advisory_key(_SCHEMA_LOCK)
                connection.execute(select(func.pg_advisory_xact_lock(key)))
            Base.metadata.create_all(connection)
            add_missing_columns(connection)
        self._owner_only()

    def _owner_only(self) -> None:
        """Make the SQLite file readable by the service's user only (it names patients).

        SQLite gives its journal and WAL files the database file's mode.
        """
        if self.is_sqlite and self.url.database and Path(self.url.database).is_file():
            Path(self.url.database).chmod(0o600)

    def ping(self) -> None:
        """Run ``SELECT 1``; raises if the database cannot be reached."""
        with self.reading() as session:
            session.execute(select(1))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def add_missing_columns(connection: Connection) -> list[str]:
    """Add the columns a newer release declares to tables an older one created.

    ``create_all`` creates missing tables only. A column added later has a server default (or
    is nullable), so ``ALTER TABLE ... ADD COLUMN`` fills the rows already stored.

    Returns:
        The columns added, as ``table.column``.
    """
    inspector = inspect(connection)
    added = []
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if column.server_default is None and not column.nullable:
                raise RuntimeError(f"{table.name}.{column.name} needs a server default to be added")
            spec = CreateColumn(column).compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {spec}"))
            added.append(f"{table.name}.{column.name}")
    if added:
        _LOG.info("database schema: added %s", ", ".join(added))
    return added


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def open_database(settings: Settings) -> Database:
    """Build the database of ``settings`` and make sure its schema exists.

    Raises:
        ConfigError: If the URL is not supported.
    """
    url = database_url(settings)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    database = Database(url)
    database.create_schema()
    return database


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL, a busy timeout and foreign keys; transactions are begun by ``_sqlite_begin``."""
    dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    immediate = connection.get_execution_options().get(_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
