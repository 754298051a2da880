"""Write the service's OpenAPI document (as ``create_app`` serves it) for the web build."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from medverse.core.settings import Settings
from medverse.service import create_app


def dump_openapi(out: Path) -> Path:
    """Build the app with default settings in a throw-away data dir and write its schema.

    Args:
        out: The JSON file to write (its folder must exist).

    Returns:
        ``out``.
    """
    with tempfile.TemporaryDirectory(prefix="medverse-openapi-") as scratch:
        root = Path(scratch)
        app = create_app(Settings(data_dir=root / "data", models_dir=root / "models"))
        schema = app.openapi()
    text = json.dumps(schema, indent=1, sort_keys=True) + "\n"
    if not out.is_file() or out.read_text() != text:  # unchanged: keep the file's time
        out.write_text(text)
    return out


def main() -> None:
    """``python web/scripts/dump_openapi.py [OUT]`` (default: web/openapi.json)."""
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[1] / "openapi.json"
    parser.add_argument("out", nargs="?", type=Path, default=default)
    print(dump_openapi(parser.parse_args().out))


if __name__ == "__main__":
    main()
