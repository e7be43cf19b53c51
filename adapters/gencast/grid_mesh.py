"""Grid <-> mesh connectivity and the structural node/edge features of GenCast's graphs.

Coordinates.  Latitude ``lat`` in [-90, 90] and longitude ``lon`` (degrees) map to the
spherical angles ``phi = rad(lon)``, ``theta = rad(90 - lat)`` and to the unit vector
``p = (cos phi sin theta, sin phi sin theta, cos theta)``.  A ``(lat, lon)`` grid is
flattened latitude-major: grid node ``i * n_lon + j`` is ``(lat[i], lon[j])``.

Graphs (as in DeepMind's ``grid_mesh_connectivity.py`` and ``denoiser.py``):

- **grid2mesh**: grid node ``g`` sends to mesh node ``m`` iff ``|p_g - v_m| <= r``,
  ``r = radius_query_fraction_edge_length * max mesh edge chord`` (a KD-tree ball query).
- **mesh2grid**: each grid node receives from the 3 vertices of the mesh face closest to
  it in R^3 (the flat triangle containing its radial projection, in practice), found as
  the reference finds it, with ``trimesh.proximity.closest_point`` (ties included).
- **mesh**: the mesh's directed face edges.

Structural features (``model_utils.get_graph_spatial_features`` in the reference): per node
``cos theta`` (latitude), ``cos phi, sin phi`` (longitude), optionally the position; per edge
the sender-minus-receiver position ``R_r (p_s - p_r)`` in the receiver's local frame,
``R_r`` rotating the receiver to ``(1, 0, 0)`` (longitude, then latitude to 0), preceded by
its length, all divided by the longest such length.
"""

import numpy as np
from jaxtyping import Float, Int
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from .mesh import TriangularMesh, max_edge_length

# ---------------------------------------------------------------------------------------
# Coordinates
# ---------------------------------------------------------------------------------------


def lat_lon_to_spherical(
    lat: Float[np.ndarray, "*n"], lon: Float[np.ndarray, "*n"]
) -> tuple[Float[np.ndarray, "*n"], Float[np.ndarray, "*n"]]:
    """``(phi, theta) = (rad(lon), rad(90 - lat))`` in the inputs' dtype."""
    return np.deg2rad(lon), np.deg2rad(90 - lat)


def spherical_to_cartesian(
    phi: Float[np.ndarray, "*n"], theta: Float[np.ndarray, "*n"]
) -> Float[np.ndarray, "*n 3"]:
    """Unit vectors ``(cos phi sin theta, sin phi sin theta, cos theta)``."""
    return np.stack(
        [np.cos(phi) * np.sin(theta), np.sin(phi) * np.sin(theta), np.cos(theta)], axis=-1
    )


def lat_lon_to_cartesian(
    lat: Float[np.ndarray, "*n"], lon: Float[np.ndarray, "*n"]
) -> Float[np.ndarray, "*n 3"]:
    """Unit vectors of points given in degrees of latitude and longitude."""
    return spherical_to_cartesian(*lat_lon_to_spherical(lat, lon))


def cartesian_to_lat_lon(
    xyz: Float[np.ndarray, "*n 3"],
) -> tuple[Float[np.ndarray, "*n"], Float[np.ndarray, "*n"]]:
    """``lat = 90 - deg(arccos z)``, ``lon = deg(atan2(y, x)) mod 360`` of unit vectors."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    phi = np.arctan2(y, x)
    with np.errstate(invalid="ignore"):
        theta = np.arccos(z)
    return 90 - np.rad2deg(theta), np.mod(np.rad2deg(phi), 360)


def grid_node_lat_lon(
    lat: Float[np.ndarray, " n_lat"], lon: Float[np.ndarray, " n_lon"]
) -> tuple[Float[np.ndarray, " n_grid"], Float[np.ndarray, " n_grid"]]:
    """Latitude and longitude of each flattened (latitude-major) grid node."""
    grid_lon, grid_lat = np.meshgrid(lon, lat)
    return grid_lat.reshape(-1), grid_lon.reshape(-1)


def grid_positions(
    lat: Float[np.ndarray, " n_lat"], lon: Float[np.ndarray, " n_lon"]
) -> Float[np.ndarray, "n_grid 3"]:
    """Unit vectors of the flattened (latitude-major) grid nodes, in the inputs' dtype."""
    phi, theta = np.meshgrid(np.deg2rad(lon), np.deg2rad(90 - lat))
    return spherical_to_cartesian(phi, theta).reshape(-1, 3)


def mesh_node_lat_lon(
    mesh: TriangularMesh,
) -> tuple[Float[np.ndarray, " n_mesh"], Float[np.ndarray, " n_mesh"]]:
    """float32 latitude and longitude of the mesh vertices."""
    lat, lon = cartesian_to_lat_lon(mesh.vertices)
    return lat.astype(np.float32), lon.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Connectivity
# ---------------------------------------------------------------------------------------


def grid2mesh_radius(mesh: TriangularMesh, radius_query_fraction_edge_length: float) -> float:
    """The grid2mesh query radius: the fraction times the longest mesh edge chord."""
    return max_edge_length(mesh) * radius_query_fraction_edge_length


def radius_query_edges(
    lat: Float[np.ndarray, " n_lat"],
    lon: Float[np.ndarray, " n_lon"],
    mesh: TriangularMesh,
    radius: float,
) -> tuple[Int[np.ndarray, " E"], Int[np.ndarray, " E"]]:
    """Grid-to-mesh edges ``(grid_indices, mesh_indices)`` with chord ``|p_g - v_m| <= radius``.

    Edges are ordered by grid node, then by mesh index.  Precision rule (the reference's):
    `lat` and `lon` are cast to float32 whatever their dtype (``_init_grid_properties`` of
    GenCast's denoiser), the unit vectors are computed in float32 and the KD-tree compares
    their float64 values with the float32 mesh vertices.  Grid points at a chord within
    float32 rounding of `radius` depend on it: at 0.25 degrees with mesh 6, float64
    coordinates would give 1,618,824 edges instead of the reference's 1,618,818.
    """
    positions = grid_positions(np.asarray(lat, np.float32), np.asarray(lon, np.float32))
    tree = cKDTree(mesh.vertices)
    neighbours = tree.query_ball_point(positions, r=radius, return_sorted=True)
    counts = np.fromiter((len(n) for n in neighbours), dtype=np.int64, count=len(neighbours))
    grid_indices = np.repeat(np.arange(len(neighbours)), counts)
    mesh_indices = (
        np.concatenate([np.asarray(n, dtype=np.int64) for n in neighbours])
        if counts.sum()
        else np.zeros(0, np.int64)
    )
    return grid_indices, mesh_indices


def _closest_points_on_triangles(
    p: Float[np.ndarray, "n 3"], a: Float[np.ndarray, "n 3"], b: Float[np.ndarray, "n 3"],
    c: Float[np.ndarray, "n 3"],
) -> Float[np.ndarray, "n 3"]:
    """The point of triangle ``abc`` closest to ``p``, row-wise (Voronoi-region test).

    Ericson, *Real-Time Collision Detection* (2005), section 5.1.5: the closest point is a
    vertex, a point on an edge, or the projection onto the plane, depending on the
    barycentric signs of ``p``'s projection.
    """
    dot = lambda u, v: np.einsum("ij,ij->i", u, v)  # noqa: E731
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = dot(ab, ap), dot(ac, ap)
    bp = p - b
    d3, d4 = dot(ab, bp), dot(ac, bp)
    cp = p - c
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        # Interior: barycentric (1 - v - w, v, w).
        denom = 1.0 / (va + vb + vc)
        out = a + ab * (vb * denom)[:, None] + ac * (vc * denom)[:, None]
        # Edges (parameter t along the edge), checked before the vertices overwrite them.
        in_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        t_ab = d1 / (d1 - d3)
        in_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        t_ac = d2 / (d2 - d6)
        in_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    out = np.where(in_bc[:, None], b + (c - b) * t_bc[:, None], out)
    out = np.where(in_ac[:, None], a + ac * t_ac[:, None], out)
    out = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
    out = np.where(in_ab[:, None], a + ab * t_ab[:, None], out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
    out = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)
    return out


MESH2GRID_BACKENDS = ("trimesh", "numpy")


def check_mesh2grid_backend(backend: str) -> None:
    """Raise a clear error for an unknown backend, or for ``"trimesh"`` without its packages."""
    if backend not in MESH2GRID_BACKENDS:
        raise ValueError(f"mesh2grid backend must be one of {MESH2GRID_BACKENDS}, got {backend!r}.")
    if backend == "trimesh":
        try:
            import rtree  # noqa: F401  (trimesh's R-tree of triangles)
            import trimesh  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "mesh2grid backend 'trimesh' (the default: GenCast's exact mesh-to-grid rule) "
                f"needs the packages trimesh and rtree ({err}); install them with "
                '`pip install "assimilax[gencast]"`, or pass mesh2grid_backend="numpy" '
                "(differs from the reference at tie points)."
            ) from err


def containing_faces(
    points: Float[np.ndarray, "n 3"],
    mesh: TriangularMesh,
    *,
    backend: str = "trimesh",
    tie_tolerance: float = 1e-8,
    chunk_size: int = 65536,
) -> Int[np.ndarray, " n"]:
    """Index of the mesh face (flat triangle) closest to each point in R^3.

    ``backend="trimesh"`` (default) is GenCast's own rule: DeepMind's
    ``grid_mesh_connectivity.in_mesh_triangle_indices`` builds
    ``trimesh.Trimesh(vertices, faces)`` and takes the face returned by
    ``trimesh.proximity.closest_point``; this calls the same two functions (it needs
    ``trimesh`` and ``rtree``: ``pip install "assimilax[gencast]"``).  That rule is: candidate
    faces from an R-tree of the triangles' bounding boxes, the two nearest by
    ``numpy.argsort`` of the squared distances, and, when those are within ``1e-8``, the one
    whose normal is best aligned with the direction to the point.  At points *exactly*
    equidistant from two faces (on the mesh's mirror planes) the answer is decided by the
    order in which ``argsort`` returns equal distances, which is NumPy's and the CPU's (x86-64
    with AVX2 and NumPy >= 2 reverses some equal pairs; see ``docs/gencast.md``).

    ``backend="numpy"``: the same distances, without trimesh; candidates are the faces
    touching the 6 mesh vertices nearest to the point; near-ties (squared distances within
    `tie_tolerance`) go to the face whose outward normal is best aligned with the direction
    from the closest point to the query point, exact ties to the lowest face index.  It
    differs from the reference at tie points (3 of 684 nodes for mesh 2 on a 10-degree grid,
    42 and 99 of 65,160 for meshes 4 and 5 at 1 degree).
    """
    points = np.asarray(points)
    check_mesh2grid_backend(backend)
    if backend == "trimesh":
        import trimesh

        # As the reference: default processing (no vertex is merged: they are distinct).
        surface = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces)
        if surface.faces.shape != np.shape(mesh.faces):
            raise ValueError("trimesh changed the mesh's faces; the mesh has duplicate vertices.")
        return np.asarray(trimesh.proximity.closest_point(surface, points)[2], dtype=np.int64)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces)
    n_vertices = vertices.shape[0]
    # Vertex -> incident faces, as a table padded with -1.
    flat = faces.reshape(-1)
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=n_vertices)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(flat.size) - np.repeat(starts, counts)
    incident = np.full((n_vertices, int(counts.max())), -1, dtype=np.int64)
    incident[flat[order], slot] = order // 3
    normals = np.cross(
        vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]]
    )
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)

    tree = cKDTree(vertices)
    k = min(6, n_vertices)
    result = np.empty(points.shape[0], dtype=np.int64)
    for lo in range(0, points.shape[0], chunk_size):
        p = np.asarray(points[lo : lo + chunk_size], dtype=np.float64)
        _, nearest = tree.query(p, k=k)
        cand = np.sort(incident[nearest].reshape(p.shape[0], -1), axis=1)
        cand[:, 1:][cand[:, 1:] == cand[:, :-1]] = -1  # drop repeats (rows are sorted)
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        tri = vertices[faces[safe]]  # (n, c, 3 vertices, 3)
        q = np.broadcast_to(p[:, None, :], safe.shape + (3,)).reshape(-1, 3)
        close = _closest_points_on_triangles(
            q, tri[..., 0, :].reshape(-1, 3), tri[..., 1, :].reshape(-1, 3),
            tri[..., 2, :].reshape(-1, 3),
        ).reshape(safe.shape + (3,))
        diff = p[:, None, :] - close
        dist2 = np.where(valid, np.einsum("ncj,ncj->nc", diff, diff), np.inf)
        # Invalid slots (-1) sort first in `cand`; a stable sort on distance keeps
        # the remaining equal distances in ascending face index.
        best2 = np.argsort(dist2, axis=1, kind="stable")[:, :2]
        rows = np.arange(p.shape[0])[:, None]
        d2 = dist2[rows, best2]
        tie = (np.abs(d2[:, 0] - d2[:, 1]) < tie_tolerance) & np.all(d2 > tie_tolerance, axis=1)
        direction = diff[rows, best2] / np.sqrt(np.where(np.isfinite(d2), d2, 1.0))[..., None]
        alignment = np.einsum("nbj,nbj->nb", normals[safe[rows, best2]], direction)
        pick = np.where(tie, np.argmax(alignment, axis=1), 0)
        result[lo : lo + p.shape[0]] = cand[rows[:, 0], best2[rows[:, 0], pick]]
    return result


def in_mesh_triangle_edges(
    lat: Float[np.ndarray, " n_lat"],
    lon: Float[np.ndarray, " n_lon"],
    mesh: TriangularMesh,
    *,
    backend: str = "trimesh",
) -> tuple[Int[np.ndarray, " E"], Int[np.ndarray, " E"]]:
    """Mesh-to-grid edges ``(grid_indices, mesh_indices)``: 3 per grid node.

    Grid node ``g`` is linked to the three vertices of its containing face, in the face's
    vertex order; edges are ordered by grid node (``E = 3 n_grid``).  `backend`: see
    [`containing_faces`][].  As in [`radius_query_edges`][], `lat` and `lon` are cast to
    float32 first (the reference's rule).
    """
    positions = grid_positions(np.asarray(lat, np.float32), np.asarray(lon, np.float32))
    face_ids = containing_faces(positions, mesh, backend=backend)
    mesh_indices = np.asarray(mesh.faces)[face_ids].reshape(-1).astype(np.int64)
    grid_indices = np.repeat(np.arange(positions.shape[0]), 3)
    return grid_indices, mesh_indices


# ---------------------------------------------------------------------------------------
# Structural features
# ---------------------------------------------------------------------------------------


def local_rotation_matrices(
    phi: Float[np.ndarray, " n"],
    theta: Float[np.ndarray, " n"],
    *,
    rotate_latitude: bool = True,
    rotate_longitude: bool = True,
) -> Float[np.ndarray, "n 3 3"]:
    """Rotations taking each reference point to longitude 0 and/or latitude 0.

    Both: ``R = R_y(pi/2 - theta) R_z(-phi)``, which sends the point to ``(1, 0, 0)`` and
    keeps the meridian through it in the ``x-z`` plane.  Longitude only: ``R_z(-phi)``.
    Latitude only: ``R_z(phi) R_y(pi/2 - theta) R_z(-phi)``.  Extrinsic Euler angles,
    evaluated by scipy in float64.
    """
    azimuthal = -phi
    polar = np.pi / 2 - theta
    if rotate_longitude and rotate_latitude:
        angles, seq = np.stack([azimuthal, polar], axis=1), "zy"
    elif rotate_longitude:
        angles, seq = azimuthal[:, None], "z"
    elif rotate_latitude:
        angles, seq = np.stack([azimuthal, polar, -azimuthal], axis=1), "zyz"
    else:
        raise ValueError("At least one of latitude and longitude must be rotated.")
    return Rotation.from_euler(seq, angles).as_matrix()


def _node_features(
    phi: np.ndarray, theta: np.ndarray, *, add_positions: bool, add_latitude: bool,
    add_longitude: bool,
) -> np.ndarray:
    features = []
    if add_positions:
        features.extend(np.moveaxis(spherical_to_cartesian(phi, theta), -1, 0))
    if add_latitude:
        features.append(np.cos(theta))
    if add_longitude:
        features += [np.cos(phi), np.sin(phi)]
    if not features:
        return np.zeros((phi.shape[0], 0), dtype=phi.dtype)
    return np.stack(features, axis=-1)


def bipartite_spatial_features(
    *,
    senders_lat: Float[np.ndarray, " n_s"],
    senders_lon: Float[np.ndarray, " n_s"],
    receivers_lat: Float[np.ndarray, " n_r"],
    receivers_lon: Float[np.ndarray, " n_r"],
    senders: Int[np.ndarray, " E"],
    receivers: Int[np.ndarray, " E"],
    add_node_positions: bool = False,
    add_node_latitude: bool = True,
    add_node_longitude: bool = True,
    add_relative_positions: bool = True,
    relative_longitude_local_coordinates: bool = True,
    relative_latitude_local_coordinates: bool = True,
    edge_normalization_factor: float | None = None,
) -> tuple[Float[np.ndarray, "n_s f"], Float[np.ndarray, "n_r f"], Float[np.ndarray, "E g"]]:
    """Node features of both node sets and edge features of a sender -> receiver graph.

    Edge features (if `add_relative_positions`): ``[|d|, d] / L`` with
    ``d = R_r (p_s - p_r)``, ``R_r`` from [`local_rotation_matrices`][] of the receiver (or
    the identity when neither local option is set) and ``L`` =
    `edge_normalization_factor`, by default ``max |d|`` over the edges.  Defaults are
    GenCast's choices (no positions; latitude, longitude, both local rotations).
    """
    s_phi, s_theta = lat_lon_to_spherical(np.asarray(senders_lat), np.asarray(senders_lon))
    r_phi, r_theta = lat_lon_to_spherical(np.asarray(receivers_lat), np.asarray(receivers_lon))
    node_opts = dict(
        add_positions=add_node_positions,
        add_latitude=add_node_latitude,
        add_longitude=add_node_longitude,
    )
    sender_features = _node_features(s_phi, s_theta, **node_opts)
    receiver_features = _node_features(r_phi, r_theta, **node_opts)
    if not add_relative_positions:
        return sender_features, receiver_features, np.zeros((senders.shape[0], 0), s_phi.dtype)

    s_pos = spherical_to_cartesian(s_phi, s_theta)[senders]
    r_pos = spherical_to_cartesian(r_phi, r_theta)[receivers]
    if relative_latitude_local_coordinates or relative_longitude_local_coordinates:
        rot = local_rotation_matrices(
            r_phi,
            r_theta,
            rotate_latitude=relative_latitude_local_coordinates,
            rotate_longitude=relative_longitude_local_coordinates,
        )[receivers]
        relative = np.einsum("eij,ej->ei", rot, s_pos) - np.einsum("eij,ej->ei", rot, r_pos)
    else:
        relative = s_pos - r_pos
    length = np.linalg.norm(relative, axis=-1, keepdims=True)
    if edge_normalization_factor is None:
        edge_normalization_factor = length.max()
    edge_features = np.concatenate([length, relative], axis=-1) / edge_normalization_factor
    return sender_features, receiver_features, edge_features


def graph_spatial_features(
    *,
    node_lat: Float[np.ndarray, " n"],
    node_lon: Float[np.ndarray, " n"],
    senders: Int[np.ndarray, " E"],
    receivers: Int[np.ndarray, " E"],
    **options,
) -> tuple[Float[np.ndarray, "n f"], Float[np.ndarray, "E g"]]:
    """Node and edge features of a graph on one node set (see [`bipartite_spatial_features`][])."""
    nodes, _, edges = bipartite_spatial_features(
        senders_lat=node_lat,
        senders_lon=node_lon,
        receivers_lat=node_lat,
        receivers_lon=node_lon,
        senders=senders,
        receivers=receivers,
        **options,
    )
    return nodes, edges
