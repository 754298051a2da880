"""Subprocess entry of the tet mesher: ``python -m medverse.sim.mesher_worker IN.npz OUT.npz``.

fTetWild's C++ call cannot be interrupted from Python and can run for minutes (or hang) on
bad input, so :mod:`medverse.sim.mesher` runs it here, in a child process it can kill.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np


def load_ftetwild() -> ModuleType:
    """Return pytetwild's compiled fTetWild extension.

    pytetwild 0.4.2's package ``__init__`` imports pyvista (for an optional accessor) although
    pyvista is not one of its dependencies; the extension itself needs only numpy, so it is
    loaded from its file when the package import fails for that reason.
    """
    try:
        from pytetwild import PyfTetWildWrapper

        return PyfTetWildWrapper
    except ModuleNotFoundError as error:
        if error.name != "pyvista":
            raise
    spec = importlib.util.find_spec("pytetwild")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pytetwild is not installed: pip install pytetwild==0.4.2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    library = next(folder.glob("PyfTetWildWrapper*.so"))
    ext_spec = importlib.util.spec_from_file_location("PyfTetWildWrapper", library)
    assert ext_spec is not None and ext_spec.loader is not None
    module = importlib.util.module_from_spec(ext_spec)
    ext_spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    """Read the surface and options from ``argv[0]``, write nodes and tets to ``argv[1]``."""
    src, dst = Path(argv[0]), Path(argv[1])
    data = np.load(src)
    ftetwild = load_ftetwild()
    points, tets = ftetwild.tetrahedralize_mesh(
        np.ascontiguousarray(data["vertices"], dtype=np.float64),
        np.ascontiguousarray(data["faces"], dtype=np.uint32),
        True,  # optimize
        False,  # skip_simplify
        0.05,  # edge_length_r (unused: an absolute length is given)
        float(data["edge_length"]),
        float(data["envelope"]),
        10.0,  # stop_energy (fTetWild default)
        True,  # coarsen
        int(data["threads"]),
        int(data["optimize_iterations"]),
        6,  # log level: minimal
        True,  # quiet
        False,  # vtk_ordering
        False,  # disable_filtering
        np.zeros((0, 3)),
        np.zeros((0, 4), dtype=np.int32),
        np.zeros(0),
    )
    with dst.open("wb") as handle:
        np.savez(handle, points=points, tets=tets)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
