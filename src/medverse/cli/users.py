"""``medverse users``: add and remove service users, issue API tokens, list users."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medverse.core.settings import Settings

ROLES = ("admin", "clinician", "researcher")


def register(subparsers: Any) -> None:
    """Add the ``users`` command and its ``add``, ``remove``, ``token`` and ``list`` actions."""
    parser = subparsers.add_parser(
        "users",
        help="manage service users and API tokens",
        description=(
            "Manage the users of `medverse serve` (in its database: same --data-dir or "
            "MEDVERSE_DATABASE_URL). Roles: admin (everything), clinician (identified "
            "studies), researcher (de-identified studies only)."
        ),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, help="service data folder (MEDVERSE_DATA_DIR)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a user", parents=[common])
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    remove = actions.add_parser(
        "remove", help="remove a user and revoke their tokens", parents=[common]
    )
    remove.add_argument("name")
    token = actions.add_parser("token", help="issue a new token (printed once)", parents=[common])
    token.add_argument("name")
    token.add_argument("--revoke-others", action="store_true", help="revoke earlier tokens")
    actions.add_parser("list", help="list users", parents=[common])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Carry out one user action."""
    from medverse.service import api

    settings = service_settings(args.data_dir)
    if args.action == "add":
        user = api.add_user(settings, args.name, args.role)
        print(f"added {user.name} ({user.role}); get a token: medverse users token {user.name}")
    elif args.action == "remove":
        api.remove_user(settings, args.name)
        print(f"removed {args.name} and revoked their tokens")
    elif args.action == "token":
        print(api.issue_token(settings, args.name, revoke_others=args.revoke_others))
    else:
        for user in api.list_users(settings):
            print(f"{user.name}\t{user.role}\t{user.tokens} token(s)")
    return 0


def service_settings(data_dir: Path | None, models_dir: Path | None = None) -> Settings:
    """The environment's settings with the command-line folders applied on top.

    Raises:
        ConfigError: If a ``MEDVERSE_*`` setting is invalid (e.g. a default secret in
            production).
    """
    from pydantic import ValidationError

    from medverse.core.errors import ConfigError
    from medverse.core.settings import Settings

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if models_dir is not None:
        overrides["models_dir"] = models_dir
    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
