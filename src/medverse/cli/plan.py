"""``medverse plan``: fingerprint an MSD dataset and write fingerprint.json and plan.json."""

from __future__ import annotations

import argparse
import json
from typing import Any

from medverse.core.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add the ``plan`` command to the CLI."""
    parser = subparsers.add_parser(
        "plan",
        help="measure a dataset and derive its preprocessing plan",
        description=(
            "Fingerprint an MSD-layout dataset (dataset.json, imagesTr, labelsTr) and write "
            "fingerprint.json and plan.json into it (or into --out)."
        ),
    )
    parser.add_argument("dataset_dir", metavar="DATASET_DIR", help="MSD dataset folder")
    parser.add_argument("--out", metavar="DIR", help="write the JSON files here instead")
    parser.add_argument("--preset", default="dynunet", help="model preset (default: dynunet)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="force a decision, e.g. patch_size=32,48,32 or normalization=zscore (repeatable)",
    )
    parser.add_argument(
        "--max-cases", type=int, metavar="N", help="fingerprint only the first N cases"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan the dataset and print where the files went."""
    from medverse.preprocessing.plan import plan_dataset

    result = plan_dataset(
        args.dataset_dir,
        out_dir=args.out,
        preset=args.preset,
        overrides=parse_overrides(args.override),
        max_cases=args.max_cases,
    )
    plan = result.plan
    print(f"fingerprint: {result.fingerprint_path} ({result.fingerprint.num_cases} cases)")
    print(f"plan: {result.plan_path}")
    print(
        f"  {plan.modality}: spacing {list(plan.target_spacing)} mm, patch "
        f"{list(plan.patch_size)}, normalization {plan.normalization}, preset {plan.preset}"
    )
    return 0


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings: JSON values, ``a,b,c`` number lists, else plain strings.

    Raises:
        ConfigError: If an item has no ``=``.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--override needs KEY=VALUE, got {item!r}")
        overrides[key.strip()] = _parse_value(text.strip())
    return overrides


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        try:
            return [json.loads(part) for part in text.split(",")]
        except json.JSONDecodeError:
            pass
    return text
