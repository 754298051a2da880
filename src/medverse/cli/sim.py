"""``medverse sim``: surgical rehearsal tools (``sim mesh``: tet mesh of a segmented organ)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``sim`` command and its ``mesh`` subcommand."""
    parser = subparsers.add_parser(
        "sim", help="soft-tissue simulation (surgical rehearsal)", description=__doc__
    )
    actions = parser.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    mesh = actions.add_parser(
        "mesh",
        help="tetrahedral mesh of one segmented structure",
        description=(
            "Mesh one structure of a segmentation result folder (labels.nii.gz + report.json) "
            "into tetrahedra with fTetWild: writes tetmesh.vtu (RAS mm), quality.json (element "
            "count, dihedral angles, volume vs the label's, material) and mesh.png; all or "
            "nothing."
        ),
    )
    mesh.add_argument("result_dir", type=Path, help="output folder of `medverse segment`")
    mesh.add_argument("--structure", required=True, help="structure name, e.g. liver, spleen")
    mesh.add_argument("--out", type=Path, required=True, help="folder to write into")
    mesh.add_argument("--edge-length", type=float, default=10.0, help="target edge (mm)")
    mesh.add_argument("--timeout", type=float, default=900.0, help="mesher time limit (s)")
    mesh.add_argument("--youngs-modulus", type=float, help="override E (Pa)")
    mesh.add_argument("--poisson-ratio", type=float, help="override nu")
    mesh.add_argument("--density", type=float, help="override density (kg/m^3)")
    mesh.add_argument("--tissue", help="tissue of the material table (default: from the name)")
    mesh.set_defaults(func=run_mesh)


def run_mesh(args: argparse.Namespace) -> int:
    """Mesh the structure and print the quality summary."""
    from medverse.sim.materials import material_for, tissue_for_structure
    from medverse.sim.mesher import MeshOptions
    from medverse.sim.organ_mesh import mesh_structure

    options = MeshOptions(edge_length_mm=args.edge_length, timeout_s=args.timeout)
    material = material_for(args.tissue or tissue_for_structure(args.structure)).with_overrides(
        youngs_modulus_pa=args.youngs_modulus,
        poisson_ratio=args.poisson_ratio,
        density_kg_m3=args.density,
    )
    result = mesh_structure(
        args.result_dir, args.structure, args.out, options=options, material=material
    )
    q = result.report
    print(
        f"{args.structure}: {q.tetrahedra} tetrahedra, {q.nodes} nodes, min dihedral "
        f"{q.min_dihedral_deg:.1f} deg, volume {q.volume_ml:.2f} ml vs label "
        f"{q.label_volume_ml:.2f} ml ({q.volume_error_pct:+.2f} %)"
    )
    print(f"wrote {result.tetmesh}, {result.quality}, {result.picture}")
    return 0
