"""Icosahedral meshes of the unit sphere: the refinement hierarchy, the multi-mesh, edges.

Refinement level ``r`` (``r`` splits of the regular icosahedron) has

    V_r = 10 * 4^r + 2 vertices,   F_r = 20 * 4^r faces,   E_r = 30 * 4^r undirected edges

(Euler: ``V - E + F = 2``).  One split replaces each face ``(a, b, c)`` by the four faces
``(a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca)``, where ``ab`` is the midpoint of the
edge ``a-b`` projected back onto the unit sphere, ``ab = (a + b) / |a + b|``.  Vertex
``i`` of level ``r`` is also vertex ``i`` of every finer level: new vertices are appended in
the order in which their edge is first met, scanning the faces in order and each face's edges
in the order ``a-b, b-c, c-a``.  This ordering, the orientation of the icosahedron and the
float32 rounding follow DeepMind's ``icosahedral_mesh.py`` so that node indices (and hence
graph features and parameters) line up with the reference.

Faces are counter-clockwise seen from outside.  A closed, consistently oriented mesh turns
into directed edges ``a->b, b->c, c->a`` per face ([`faces_to_edges`][]); every edge then
appears once in each direction, ``3 F`` directed edges in all.

- The **multi-mesh** ([`merge_meshes`][]) is the finest level's vertices with the faces of
  all levels: ``sum_{r<=R} 60 * 4^r`` directed edges (GraphCast).
- **GenCast** uses the finest level only, its vertices renumbered by reverse Cuthill-McKee
  ([`permute_to_banded`][]) so that the adjacency is banded for sparse attention.
"""

from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int
from scipy.spatial.transform import Rotation

# Face list of the icosahedron in counter-clockwise order seen from outside, indexing the
# vertices produced by `icosahedron` (the reference's numbering).
_ICOSAHEDRON_FACES = (
    (0, 1, 2), (0, 6, 1), (8, 0, 2), (8, 4, 0), (3, 8, 2),
    (3, 2, 7), (7, 2, 1), (0, 4, 6), (4, 11, 6), (6, 11, 5),
    (1, 5, 7), (4, 10, 11), (4, 8, 10), (10, 8, 3), (10, 3, 9),
    (11, 10, 9), (11, 9, 5), (5, 9, 7), (9, 3, 7), (1, 6, 5),
)  # fmt: skip


class TriangularMesh(NamedTuple):
    """A triangulated surface: unit-norm `vertices` and counter-clockwise `faces`."""

    vertices: Float[np.ndarray, "V 3"]
    faces: Int[np.ndarray, "F 3"]


def num_vertices(splits: int) -> int:
    """``10 * 4^r + 2``: vertices of the mesh refined `splits` times."""
    return 10 * 4**splits + 2


def num_faces(splits: int) -> int:
    """``20 * 4^r``: faces of the mesh refined `splits` times."""
    return 20 * 4**splits


def num_multimesh_edges(splits: int) -> int:
    """Directed edges of the multi-mesh: ``sum_{r=0}^{R} 3 F_r = sum 60 * 4^r``."""
    return sum(3 * num_faces(r) for r in range(splits + 1))


def icosahedron() -> TriangularMesh:
    """The regular icosahedron inscribed in the unit sphere, in the reference orientation.

    Vertices are the cyclic permutations of ``(+-1, +-phi, 0)``, ``phi = (1 + sqrt 5) / 2``,
    scaled by ``1 / sqrt(1 + phi^2)``; they are then rotated about ``y`` by
    ``(pi - theta_d) / 2``, ``theta_d = 2 arcsin(phi / sqrt 3)`` the dihedral angle, which
    turns a face (rather than an edge) towards each pole.
    """
    phi = (1 + np.sqrt(5)) / 2
    points = []
    for s in (1.0, -1.0):
        for t in (phi, -phi):
            points += [(s, t, 0.0), (0.0, s, t), (t, 0.0, s)]
    # Rounded to float32 before and after scaling, then rotated in float64 and rounded
    # again: the reference's sequence of roundings.
    vertices = np.asarray(points, dtype=np.float32)
    vertices = (vertices / np.linalg.norm([1.0, phi])).astype(np.float32)
    dihedral = 2 * np.arcsin(phi / np.sqrt(3))
    rotation = Rotation.from_euler("y", (np.pi - dihedral) / 2).as_matrix()
    vertices = np.dot(vertices, rotation)
    return TriangularMesh(
        vertices=vertices.astype(np.float32),
        faces=np.asarray(_ICOSAHEDRON_FACES, dtype=np.int32),
    )


def split_faces(mesh: TriangularMesh) -> TriangularMesh:
    """Split every face into four, adding the sphere-projected edge midpoints.

    The old vertices keep their indices; midpoints are appended in order of first use (see
    the module docstring).  Computed in float32 like the reference.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces)
    n_old = vertices.shape[0]
    # Edges a-b, b-c, c-a of each face, face-major: shape (F, 3, 2).
    ends = np.stack([faces, np.roll(faces, -1, axis=1)], axis=-1)
    keys = np.sort(ends, axis=-1).reshape(-1, 2)
    unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    # Number the unique edges by their first occurrence.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    mid_index = (n_old + rank[inverse.reshape(-1)]).reshape(faces.shape)  # (F, 3): ab, bc, ca
    new_edges = unique[order]
    mid = (vertices[new_edges[:, 0]] + vertices[new_edges[:, 1]]) / np.float32(2)
    mid = mid / _row_norms(mid)[:, None]
    a, b, c = faces.T
    ab, bc, ca = mid_index.T
    children = np.stack(
        [
            np.stack([a, ab, ca], axis=-1),
            np.stack([ab, b, bc], axis=-1),
            np.stack([ca, bc, c], axis=-1),
            np.stack([ab, bc, ca], axis=-1),
        ],
        axis=1,
    ).reshape(-1, 3)
    return TriangularMesh(
        vertices=np.concatenate([vertices, mid.astype(np.float32)], axis=0),
        faces=children.astype(np.int32),
    )


def _row_norms(x: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
    """Euclidean norm of each row, each computed as the 1-D ``np.linalg.norm`` would.

    The reference normalises one float32 vertex at a time; a row-wise reduction can round
    differently in the last bit, so the norms are computed per row.
    """
    return np.fromiter((np.linalg.norm(row) for row in x), dtype=x.dtype, count=x.shape[0])


def mesh_hierarchy(splits: int) -> list[TriangularMesh]:
    """The icosahedron and its `splits` successive refinements, coarse to fine."""
    if splits < 0:
        raise ValueError(f"splits must be >= 0, got {splits}.")
    meshes = [icosahedron()]
    for _ in range(splits):
        meshes.append(split_faces(meshes[-1]))
    return meshes


def finest_mesh(splits: int) -> TriangularMesh:
    """The icosahedron refined `splits` times."""
    return mesh_hierarchy(splits)[-1]


def merge_meshes(meshes: list[TriangularMesh]) -> TriangularMesh:
    """The multi-mesh: the finest vertices and the faces of every level, coarse first.

    Raises a `ValueError` if a coarser level's vertices are not a prefix of the next one's.
    """
    for coarse, fine in zip(meshes[:-1], meshes[1:]):
        n = coarse.vertices.shape[0]
        if not np.allclose(coarse.vertices, fine.vertices[:n]):
            raise ValueError("merge_meshes: the levels are not nested (vertex prefixes differ).")
    return TriangularMesh(
        vertices=meshes[-1].vertices,
        faces=np.concatenate([m.faces for m in meshes], axis=0),
    )


def multimesh(splits: int) -> TriangularMesh:
    """The GraphCast multi-mesh of refinement `splits` (see [`merge_meshes`][])."""
    return merge_meshes(mesh_hierarchy(splits))


def faces_to_edges(
    faces: Int[np.ndarray, "F 3"],
) -> tuple[Int[np.ndarray, " E"], Int[np.ndarray, " E"]]:
    """Directed edges of the faces: all ``a->b``, then all ``b->c``, then all ``c->a``.

    Returns ``(senders, receivers)``, each of length ``3 F``.
    """
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}.")
    senders = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    receivers = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    return senders, receivers


def edge_lengths(mesh: TriangularMesh) -> Float[np.ndarray, " E"]:
    """Chord length ``|v_s - v_r|`` of every directed edge of [`faces_to_edges`][]."""
    senders, receivers = faces_to_edges(mesh.faces)
    return np.linalg.norm(mesh.vertices[senders] - mesh.vertices[receivers], axis=-1)


def max_edge_length(mesh: TriangularMesh) -> float:
    """The longest chord among the mesh's edges (GenCast scales its grid2mesh radius by it)."""
    return float(edge_lengths(mesh).max())


def permute_to_banded(mesh: TriangularMesh) -> TriangularMesh:
    """Renumber the vertices by reverse Cuthill-McKee on the (symmetric) edge adjacency.

    Vertex ``i`` of the result is vertex ``perm[i]`` of the input, ``perm`` being
    ``scipy.sparse.csgraph.reverse_cuthill_mckee`` of the 0/1 adjacency matrix built from
    [`faces_to_edges`][]; faces are relabelled accordingly.  Deterministic.
    """
    from scipy import sparse
    from scipy.sparse import csgraph

    senders, receivers = faces_to_edges(mesh.faces)
    n = mesh.vertices.shape[0]
    adjacency = sparse.csr_matrix(
        (np.ones(senders.shape[0], dtype=np.float64), (senders, receivers)), shape=(n, n)
    )
    adjacency.data[:] = 1.0  # duplicate entries (none on a closed mesh) count once
    perm = csgraph.reverse_cuthill_mckee(adjacency, symmetric_mode=True)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(n, dtype=perm.dtype)
    return TriangularMesh(vertices=mesh.vertices[perm], faces=inverse[mesh.faces])


def gencast_mesh(splits: int) -> TriangularMesh:
    """GenCast's processor mesh: the finest level, renumbered to a banded adjacency."""
    return permute_to_banded(finest_mesh(splits))
