"""``medverse icu listen|replay|prune``: MLLP listener, WFDB replay and retention of the store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _store_url(args: argparse.Namespace) -> str:
    from medverse.icu.store import sqlite_url

    return str(args.store) if args.store else sqlite_url(Path(args.data_dir) / "icu.db")


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        help="database URL (sqlite:///path or postgresql+psycopg://...); "
        "default: icu.db in --data-dir",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path.home() / ".medverse", help="folder of icu.db"
    )


def register(subparsers: Any) -> None:
    """Add the ``icu`` command and its ``listen``, ``replay`` and ``prune`` subcommands."""
    parser = subparsers.add_parser(
        "icu",
        help="ICU vital signs: HL7 v2 listener, WFDB replay, NEWS2",
        description="Take bedside vital signs in, score NEWS2 per bed and store every observation.",
    )
    sub = parser.add_subparsers(dest="icu_command", metavar="SUBCOMMAND", required=True)
    listen = sub.add_parser(
        "listen",
        help="MLLP listener for HL7 v2 ORU^R01",
        description=(
            "Listen for HL7 v2 ORU^R01 over MLLP. Each message is ACKed (AA) only after its "
            "observation is stored and scored; malformed messages get AE/AR with the reason."
        ),
    )
    listen.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    listen.add_argument("--port", type=int, default=2575, help="TCP port (default 2575; 0: any)")
    listen.add_argument(
        "--read-timeout", type=float, default=60.0, help="close silent connections after (s)"
    )
    listen.add_argument(
        "--durability",
        choices=["process", "power"],
        default="process",
        help="what an ACKed message survives on SQLite: 'process' (default; the listener "
        "killed, WAL synchronous=NORMAL) or 'power' (power loss too; fsync per commit)",
    )
    _add_store(listen)
    listen.set_defaults(func=run_listen)
    _register_replay(sub)
    prune = sub.add_parser(
        "prune",
        help="delete observations older than the retention period",
        description="Retention: delete stored vital sets observed more than --keep-days ago.",
    )
    prune.add_argument("--keep-days", type=float, required=True, help="days of data to keep")
    _add_store(prune)
    prune.set_defaults(func=run_prune)


def _register_replay(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="replay WFDB records as live beds",
        description=(
            "Replay PhysioNet WFDB records (numerics or waveforms) as live beds at a chosen "
            "speed, storing scored observations."
        ),
    )
    replay.add_argument("records", nargs="+", type=Path, help="WFDB record paths (no suffix)")
    replay.add_argument("--speed", type=float, default=60.0, help="times real time (default 60)")
    replay.add_argument("--ward", default="REPLAY", help="ward name of the replayed beds")
    replay.add_argument(
        "--max-seconds", type=float, help="stop after this much recording time per bed"
    )
    replay.add_argument(
        "--assume",
        action="append",
        default=[],
        metavar="PARAMETER=VALUE",
        help="send this value with every set for a parameter the records lack, e.g. "
        "consciousness=A, supplemental_oxygen=air, temperature=37 (declared, never implicit)",
    )
    _add_store(replay)
    replay.set_defaults(func=run_replay)


def parse_assumptions(items: list[str]) -> dict[Any, float]:
    """``["consciousness=A", "supplemental_oxygen=air"]`` to values per parameter.

    Raises:
        ConfigError: Naming the item that is not ``PARAMETER=VALUE``.
    """
    from medverse.core.errors import ConfigError, InputError
    from medverse.icu.parameters import Acvpu, Parameter

    out: dict[Any, float] = {}
    for item in items:
        name, _, text = item.partition("=")
        try:
            parameter = Parameter(name.strip())
            if parameter == Parameter.CONSCIOUSNESS:
                out[parameter] = float(Acvpu.from_letter(text))
            elif parameter == Parameter.SUPPLEMENTAL_OXYGEN:
                out[parameter] = {"air": 0.0, "oxygen": 1.0}[text.strip().lower()]
            else:
                out[parameter] = float(text)
        except (ValueError, KeyError, InputError) as error:
            choices = ", ".join(p.value for p in Parameter)
            raise ConfigError(
                f"--assume {item!r}: expected PARAMETER=VALUE with PARAMETER one of {choices} "
                "(consciousness A/C/V/P/U, supplemental_oxygen air/oxygen)"
            ) from error
    return out


def run_listen(args: argparse.Namespace) -> int:
    """Listen until interrupted."""
    from medverse.icu.api import listen
    from medverse.icu.store import Durability

    def ready(port: int) -> None:
        print(f"listening on {args.host}:{port}", flush=True)

    listen(
        _store_url(args), args.host, args.port, args.read_timeout, on_ready=ready,
        durability=Durability(args.durability),
    )  # fmt: skip
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Delete old observations and say how many."""
    from medverse.icu.api import prune

    print(f"deleted {prune(_store_url(args), args.keep_days)} vital sets")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """Replay the records and print a per-bed summary."""
    from medverse.icu.api import replay

    summary = replay(
        args.records, _store_url(args), speed=args.speed, ward=args.ward,
        max_seconds=args.max_seconds, assume=parse_assumptions(args.assume),
    )  # fmt: skip
    for line in summary.lines():
        print(line)
    return 0
