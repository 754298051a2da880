"""``medverse demo``: run the main job on the vendored sample data and say where the outputs are."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from medverse.inference.demo import DemoResult


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the bundled sample CT (and hippocampus MRI)",
        description="Read the sample CT DICOM series, write NIfTI, DICOM SEG, GLB meshes, "
        "a measured report and an overview picture; print where they are. With --serve, "
        "instead store the sample studies in a service data dir (<out>/service), queue a job "
        "per study for each shipped model, and serve the API on 127.0.0.1 with an admin token.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    parser.add_argument("--examples", type=Path, default=None, help="sample data folder")
    parser.add_argument(
        "--serve", action="store_true", help="start the service with the samples stored"
    )
    parser.add_argument("--port", type=int, default=8000, help="--serve port (default 8000)")
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="--serve models folder (default models/)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print a summary table (or serve it, with --serve)."""
    if args.serve:
        return _serve(args)
    from rich.console import Console
    from rich.table import Table

    from medverse.inference.demo import run_demo

    console = Console()
    with console.status("running the demo on the sample CT series..."):
        result = run_demo(args.out, args.examples)
    console.print(_ct_table(result))
    if result.ct_model is not None:
        console.print(
            f"  CT segmented by {result.ct_model.name}: a demonstration model fitted on one other "
            "patient, not validated, not for clinical use (card: models/ct_demo_4organ_unet.md)",
            soft_wrap=True,
        )
    if result.hippocampus_dice:
        scores = Table(title="Hippocampus MRI (validation cases) segmented by models/: Dice")
        names = sorted({name for case in result.hippocampus_dice.values() for name in case})
        scores.add_column("case")
        for name in names:
            scores.add_column(name, justify="right")
        for case, dice in result.hippocampus_dice.items():
            scores.add_row(case, *(f"{dice.get(name, float('nan')):.3f}" for name in names))
        console.print(scores)
    console.print("[bold]Outputs[/bold]")
    for path in result.files:
        print(f"  {path}", flush=True)  # plain print: paths are never wrapped
    return 0


def _ct_table(result: DemoResult) -> Table:
    """The CT's structures with their volumes (and Dice against the reference, for a model)."""
    from rich.table import Table

    source = result.ct_model.stem if result.ct_model else "reference label map"
    table = Table(title=f"Sample CT: structures measured ({source})")
    table.add_column("structure")
    table.add_column("volume (mL)", justify="right")
    if result.ct_model:
        table.add_column("Dice vs reference", justify="right")
    for name, ml in sorted(result.structures.items(), key=lambda item: -item[1]):
        dice = result.ct_dice.get(name, float("nan"))
        table.add_row(name, f"{ml:.1f}", *([f"{dice:.3f}"] if result.ct_model else []))
    return table


def _serve(args: argparse.Namespace) -> int:
    """Store the samples, print the URL and token, then serve until Ctrl-C."""
    from rich.console import Console

    from medverse.cli.users import service_settings
    from medverse.inference.demo import default_examples_dir
    from medverse.service.api import prepare_demo, serve

    examples = args.examples or default_examples_dir()
    models = args.models_dir or (examples.parent / "models")
    settings = service_settings(args.out / "service", models)
    console = Console()
    with console.status("storing the sample studies..."):
        demo = prepare_demo(settings, examples)
    url = f"http://127.0.0.1:{args.port}"
    for study_id, what in demo.studies.items():
        console.print(f"  study {study_id}  {what}")
    console.print(f"  {len(demo.jobs)} job(s) queued (models folder: {models})")
    console.print(f"[bold]medverse service:[/bold] {url}  (API docs: {url}/docs)", soft_wrap=True)
    console.print(f"[bold]admin token:[/bold] {demo.token}", soft_wrap=True)
    console.print(
        f'  try: curl -H "Authorization: Bearer {demo.token}" {url}/api/studies', soft_wrap=True
    )
    serve(settings, host="127.0.0.1", port=args.port, run_worker=True)
    return 0
