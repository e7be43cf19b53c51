"""Write ``mesh2grid_ties.npz``: GenCast's mesh-to-grid face of every grid node.

The reference (DeepMind's ``grid_mesh_connectivity.in_mesh_triangle_indices``) builds
``trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces)`` and keeps the face index that
``trimesh.proximity.closest_point`` returns for each grid position (float32 lat/lon -> float32
unit vectors).  This script makes exactly those two calls for four grids with tie points and
records the result with the platform it ran on (the choice at exact ties depends on NumPy's
``argsort`` of equal values, see docs/gencast.md).  Run from the repository root:
``python tests/data/gencast/make_mesh2grid_ties.py``.
"""

import platform
from pathlib import Path

import numpy as np
import rtree
import trimesh

from assimilax_adapters.gencast import grid_mesh as gm, mesh as M

CASES = {  # name: (mesh refinement, number of latitudes with poles, longitude step in degrees)
    "deg10_mesh1": (1, 19, 10.0),
    "deg10_mesh2": (2, 19, 10.0),
    "deg1_mesh4": (4, 181, 1.0),
    "deg1_mesh5": (5, 181, 1.0),
}


def main() -> None:
    out = {}
    for name, (splits, n_lat, step) in CASES.items():
        m = M.gencast_mesh(splits)
        lat = np.linspace(-90.0, 90.0, n_lat).astype(np.float32)
        lon = np.arange(0.0, 360.0, step).astype(np.float32)
        surface = trimesh.Trimesh(vertices=m.vertices, faces=m.faces)
        faces = trimesh.proximity.closest_point(surface, gm.grid_positions(lat, lon))[2]
        out[name] = np.asarray(faces, np.int16)
    from numpy._core._multiarray_umath import __cpu_features__ as cpu

    simd = ",".join(k for k in ("AVX2", "AVX512F", "AVX512_SKX", "ASIMD", "SVE") if cpu.get(k))
    out["platform"] = np.array(
        f"{platform.machine()}; numpy {np.__version__} (runtime SIMD: {simd}); "
        f"trimesh {trimesh.__version__}; rtree {rtree.__version__}"
    )
    path = Path(__file__).with_name("mesh2grid_ties.npz")
    np.savez_compressed(path, **out)
    print(path, path.stat().st_size, "bytes;", out["platform"])


if __name__ == "__main__":
    main()
