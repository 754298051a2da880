"""The observation store: scored vital sets in SQLite (WAL) or PostgreSQL, written in groups.

A batch is one transaction, committed when `ObservationStore.append` returns, which is when the
listener sends the ACKs. How durable a commit is on SQLite is `Durability` (WAL mode either
way): ``process`` (the default, ``synchronous=NORMAL``) keeps every committed batch when the
listener process is killed, since the write-ahead log is written before the commit returns,
but a power cut or OS crash may lose the last batches (no fsync per commit); ``power``
(``synchronous=FULL``) fsyncs every commit, so an ACKed message survives power loss too, at a
few milliseconds and some kernel CPU per batch. PostgreSQL commits are durable as the server
is configured.

A message stored before (a resend after a lost ACK: the same message key, sender + control ID,
with the same observation time) is not stored again. The unique index is on (observation time,
message key), not on the key alone: the observation times of live beds all lie near "now", so
each batch's inserts land in the last few pages of the index, where a key-only index puts every
row of a batch on a different page (each commit then writes, and each checkpoint copies, about
one 4 KB page per row, and the index soon outgrows the page cache). It also means a sender that
reuses a control ID for a new observation (monitors restart their counters) has that
observation stored rather than silently taken for a resend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    tuple_,
)
from sqlalchemy.engine import make_url

from medverse.core.errors import ConfigError
from medverse.core.logging import get_logger
from medverse.icu.alerts import Alert, AlertLevel
from medverse.icu.parameters import PARAMETERS, Parameter
from medverse.icu.vitals import VitalSet

log = get_logger(__name__)
metadata = MetaData()

vitals_table = Table(
    "icu_vitals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_key", String(200), nullable=False),
    Column("ward", String(64), nullable=False, index=True),
    Column("bed", String(64), nullable=False),
    Column("patient_id", String(64)),
    Column("source", String(8), nullable=False),
    Column("observed_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    *(Column(p.value, Float) for p in PARAMETERS),
    Column("news2_total", SmallInteger),  # NULL unless complete
    Column("news2_minimum", SmallInteger, nullable=False),
    Column("completeness", String(12), nullable=False),
    Column("risk", String(12)),
    Column("learned_score", Float),
    Column("suppressed", String(400)),  # "parameter: reason; ..." for values not scored
    Column("flags", String(400)),  # rate-of-change flags, "; "-joined
    UniqueConstraint("observed_at", "message_key", name="uq_icu_vitals_observation"),
)

beds_table = Table(
    "icu_beds",
    metadata,
    Column("bed_id", String(130), primary_key=True),
    Column("ward", String(64), nullable=False, index=True),
    Column("spo2_scale_2", Boolean, nullable=False, default=False),
)

alerts_table = Table(
    "icu_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("bed_id", String(130), nullable=False),
    Column("ward", String(64), nullable=False, index=True),
    Column("level", String(16), nullable=False),
    Column("reason", String(400), nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("escalations", Integer, nullable=False),
    Column("escalated_at", Float),
    Column("acknowledged_by", String(128)),
    Column("acknowledged_at", Float),
    Column("resolved_at", Float),
)

ward_members_table = Table(
    "icu_ward_members",
    metadata,
    Column("user", String(128), primary_key=True),
    Column("ward", String(64), primary_key=True),
)


@dataclass(slots=True)  # not frozen: one per message on the hot path (see `VitalSet`)
class ScoredVitals:
    """A vital set with what the monitor made of it, ready to store (read-only by convention).

    Attributes:
        vitals: The set as received.
        received_at: Epoch seconds it arrived.
        total: NEWS2 aggregate (None unless complete).
        minimum: Floor of the aggregate.
        completeness: `news2.Completeness` value.
        risk: `news2.Risk` value or None.
        learned: The learned deterioration score, when one ran.
        suppressed: ``(parameter, reason)`` for values kept out of the score.
        flags: Rate-of-change flags raised by this set.
    """

    vitals: VitalSet
    received_at: float
    total: int | None
    minimum: int
    completeness: str
    risk: str | None
    learned: float | None = None
    suppressed: tuple[tuple[Parameter, str], ...] = ()
    flags: tuple[str, ...] = ()

    def row(self) -> dict[str, Any]:
        """The database row."""
        return dict(zip(_INSERTED, self.record()))

    def record(self) -> tuple[Any, ...]:
        """The row's values in `vitals_table` column order (without ``id``)."""
        v, suppressed, flags = self.vitals, self.suppressed, self.flags
        return (
            v.message_key, v.ward, v.bed, v.patient_id, v.source.value, v.observed_at,
            self.received_at, *map(v.values.get, PARAMETERS), self.total, self.minimum,
            self.completeness, self.risk, self.learned,
            "; ".join(f"{p.value}: {r}" for p, r in suppressed) if suppressed else None,
            "; ".join(flags) if flags else None,
        )  # fmt: skip


_INSERTED = tuple(c.name for c in vitals_table.columns if c.name != "id")
_INSERT_SQL = (
    f"INSERT INTO icu_vitals ({', '.join(_INSERTED)}) VALUES ({', '.join('?' * len(_INSERTED))})"
)
_KEYS_PER_QUERY = 500  # well under SQLite's bound-variable limit
Key = tuple[float, str]  # (observed_at, message_key): what makes a stored vital set unique


class Durability(StrEnum):
    """What a committed (so ACKed) batch survives on SQLite; see the module docstring."""

    PROCESS = "process"  # the listener being killed (WAL, synchronous=NORMAL)
    POWER = "power"  # power loss and OS crashes too (WAL, synchronous=FULL: fsync per commit)


_SYNCHRONOUS = {Durability.PROCESS: "NORMAL", Durability.POWER: "FULL"}


def _sqlite_pragmas(durability: Durability, connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, durability: Durability = Durability.PROCESS) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    Args:
        url: The database URL.
        durability: What a SQLite commit survives (PostgreSQL: as the server is set up).

    Raises:
        ConfigError: For any other database.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"ICU store URL must be sqlite:/// or postgresql://, not {backend}")
    if backend == "sqlite" and parsed.database:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    if backend == "sqlite":
        event.listen(engine, "connect", partial(_sqlite_pragmas, Durability(durability)))
    return engine


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).expanduser()}"


class ObservationStore:
    """Scored vital sets and per-bed settings in one database.

    Args:
        engine: Where to store (`make_engine`); tables are created if missing.
    """

    autocheckpoint: int = 1000  # log pages; 0 while a `checkpoint.WalCheckpointer` runs

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)
        unique = inspect(engine).get_unique_constraints(vitals_table.name)
        if any(c["column_names"] == ["message_key"] for c in unique):
            log.warning(
                "%s was created before 2026-12-04: its vital sets are unique by message key "
                "alone, so a reused control ID is refused; recreate the store to lift that",
                vitals_table.name,
            )

    @classmethod
    def open(cls, url: str, durability: Durability = Durability.PROCESS) -> ObservationStore:
        """Open (and create if needed) the store at ``url``."""
        return cls(make_engine(url, durability))

    def append(
        self, batch: Sequence[VitalSet], score: Callable[[list[VitalSet]], list[ScoredVitals]]
    ) -> list[bool]:
        """Store a batch in one transaction; durable on return.

        Args:
            batch: Vital sets as received.
            score: Scores the sets not stored before (called inside the transaction, once).

        Returns:
            Per item, True if stored now, False if its message key and observation time
            were already stored (a resend) or appeared earlier in the batch.
        """
        keys = [(item.observed_at, item.message_key) for item in batch]
        if self.engine.dialect.name == "sqlite":
            return self._append_sqlite(batch, keys, score)
        with self.engine.begin() as connection:
            stored = tuple_(vitals_table.c.observed_at, vitals_table.c.message_key)
            known: set[tuple[float, str]] = {
                (when, key)
                for when, key in connection.execute(
                    select(vitals_table.c.observed_at, vitals_table.c.message_key).where(
                        stored.in_(keys)
                    )
                )
            }
            fresh = _fresh(keys, known)
            new = [item for item, is_new in zip(batch, fresh) if is_new]
            if new:
                connection.execute(vitals_table.insert(), [s.row() for s in score(new)])
        return fresh

    def _append_sqlite(
        self, batch: Sequence[VitalSet], keys: list[Key],
        score: Callable[[list[VitalSet]], list[ScoredVitals]],
    ) -> list[bool]:  # fmt: skip
        """`append` on the driver's connection: Core costs more than SQLite does per batch."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(f"PRAGMA wal_autocheckpoint={self.autocheckpoint}")
            cursor.execute("BEGIN IMMEDIATE")
            try:
                known: set[Key] = set()
                for when, chunk in _by_time(keys):
                    marks = ",".join("?" * len(chunk))
                    query = (
                        "SELECT message_key FROM icu_vitals"
                        f" WHERE observed_at = ? AND message_key IN ({marks})"
                    )
                    rows = cursor.execute(query, [when, *chunk])
                    known.update((when, key) for (key,) in rows)
                fresh = _fresh(keys, known)
                new = [item for item, is_new in zip(batch, fresh) if is_new]
                if new:
                    cursor.executemany(_INSERT_SQL, [s.record() for s in score(new)])
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
        finally:
            connection.close()
        return fresh

    def history(self, bed_id: str, since: float = 0.0, limit: int = 10_000) -> list[dict[str, Any]]:
        """Stored rows of one bed since ``since`` (epoch seconds), oldest first."""
        ward, _, bed = bed_id.partition("/")
        query = (
            select(vitals_table)
            .where(vitals_table.c.ward == ward, vitals_table.c.bed == bed)
            .where(vitals_table.c.observed_at >= since)
            .order_by(vitals_table.c.observed_at, vitals_table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def count(self) -> int:
        """How many vital sets are stored."""
        from sqlalchemy import func

        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(vitals_table)) or 0)

    def set_scale(self, bed_id: str, scale_2: bool) -> None:
        """Put the patient in ``bed_id`` on SpO2 scale 2 (True) or scale 1."""
        ward = bed_id.partition("/")[0]
        with self.engine.begin() as connection:
            connection.execute(beds_table.delete().where(beds_table.c.bed_id == bed_id))
            connection.execute(
                beds_table.insert(), {"bed_id": bed_id, "ward": ward, "spo2_scale_2": scale_2}
            )

    def scales(self) -> dict[str, bool]:
        """SpO2 scale 2 flag of every bed that has a setting."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(beds_table.c.bed_id, beds_table.c.spo2_scale_2))
            return {bed_id: bool(flag) for bed_id, flag in rows}

    def delete_before(self, cutoff: float) -> int:
        """Retention: delete vital sets observed before ``cutoff``; returns how many."""
        with self.engine.begin() as connection:
            result = connection.execute(
                vitals_table.delete().where(vitals_table.c.observed_at < cutoff)
            )
            return int(result.rowcount or 0)

    def save_alerts(self, alerts: Sequence[Alert]) -> None:
        """Insert or update alerts (by id) in one transaction."""
        if not alerts:
            return
        rows = [_alert_row(a) for a in alerts]
        ids = [a.id for a in alerts]
        with self.engine.begin() as connection:
            connection.execute(alerts_table.delete().where(alerts_table.c.id.in_(ids)))
            connection.execute(alerts_table.insert(), rows)

    def alerts(self, wards: Sequence[str] | None = None, open_only: bool = True) -> list[Alert]:
        """Stored alerts (of ``wards`` when given), newest first."""
        query = select(alerts_table).order_by(alerts_table.c.id.desc())
        if wards is not None:
            query = query.where(alerts_table.c.ward.in_(list(wards)))
        if open_only:
            query = query.where(alerts_table.c.resolved_at.is_(None))
        with self.engine.connect() as connection:
            return [_alert_from(row._mapping) for row in connection.execute(query)]

    def last_alert_id(self) -> int:
        """The highest stored alert id (0 when none)."""
        from sqlalchemy import func

        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.max(alerts_table.c.id))) or 0)

    def latest_by_bed(self, ward: str) -> list[dict[str, Any]]:
        """The newest stored row of every bed of ``ward``."""
        from sqlalchemy import func

        newest = (
            select(vitals_table.c.bed, func.max(vitals_table.c.id).label("id"))
            .where(vitals_table.c.ward == ward)
            .group_by(vitals_table.c.bed)
            .subquery()
        )
        query = select(vitals_table).join(newest, vitals_table.c.id == newest.c.id)
        with self.engine.connect() as connection:
            rows = [
                dict(r._mapping) for r in connection.execute(query.order_by(vitals_table.c.bed))
            ]
        return rows

    def set_member(self, user: str, ward: str, member: bool = True) -> None:
        """Give ``user`` access to ``ward`` (or take it away)."""
        with self.engine.begin() as connection:
            connection.execute(
                ward_members_table.delete().where(
                    ward_members_table.c.user == user, ward_members_table.c.ward == ward
                )
            )
            if member:
                connection.execute(ward_members_table.insert(), {"user": user, "ward": ward})

    def wards_of(self, user: str) -> list[str]:
        """The wards ``user`` may see."""
        query = select(ward_members_table.c.ward).where(ward_members_table.c.user == user)
        with self.engine.connect() as connection:
            return sorted(connection.scalars(query))

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def _by_time(keys: list[Key]) -> list[tuple[float, list[str]]]:
    """The message keys per observation time, at most `_KEYS_PER_QUERY` in one list."""
    by_time: dict[float, list[str]] = {}
    for when, key in keys:
        by_time.setdefault(when, []).append(key)
    return [
        (when, chunk[start : start + _KEYS_PER_QUERY])
        for when, chunk in by_time.items()
        for start in range(0, len(chunk), _KEYS_PER_QUERY)
    ]


def _fresh(keys: list[Key], known: set[Key]) -> list[bool]:
    """Per key, whether it is neither in ``known`` nor earlier in ``keys``."""
    fresh: list[bool] = []
    for key in keys:
        fresh.append(key not in known)
        known.add(key)
    return fresh


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id, "bed_id": alert.bed_id, "ward": alert.ward, "level": alert.level.name,
        "reason": alert.reason[:400], "opened_at": alert.opened_at,
        "escalations": alert.escalations, "escalated_at": alert.escalated_at,
        "acknowledged_by": alert.acknowledged_by, "acknowledged_at": alert.acknowledged_at,
        "resolved_at": alert.resolved_at,
    }  # fmt: skip


def _alert_from(row: Any) -> Alert:
    return Alert(
        id=row["id"], bed_id=row["bed_id"], level=AlertLevel[row["level"]], reason=row["reason"],
        opened_at=row["opened_at"], escalations=row["escalations"],
        escalated_at=row["escalated_at"], acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["acknowledged_at"], resolved_at=row["resolved_at"],
    )  # fmt: skip
