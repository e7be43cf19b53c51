"""Grid <-> mesh connectivity and structural features, against brute force and reference values."""

import sys
from pathlib import Path

import numpy as np
import pytest

from assimilax_adapters.gencast import grid_mesh as gm, mesh

# Small configuration: GenCast's mesh with 2 splits (162 nodes) and a 10-degree grid.
LAT = np.linspace(-90, 90, 19).astype(np.float32)
LON = np.arange(0, 360, 10.0).astype(np.float32)
GENCAST_FEATURES = dict(
    add_node_positions=False,
    add_node_latitude=True,
    add_node_longitude=True,
    add_relative_positions=True,
    relative_longitude_local_coordinates=True,
    relative_latitude_local_coordinates=True,
)


@pytest.fixture(scope="module")
def small():
    return gm_small_setup()


def gm_small_setup():
    m = mesh.gencast_mesh(2)
    radius = gm.grid2mesh_radius(m, 0.6)
    return m, radius


def test_coordinates_round_trip():
    rng = np.random.default_rng(0)
    lat = rng.uniform(-89.0, 89.0, 100)
    lon = rng.uniform(0.0, 360.0, 100)
    xyz = gm.lat_lon_to_cartesian(lat, lon)
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=-1), 1.0, atol=1e-12)
    lat2, lon2 = gm.cartesian_to_lat_lon(xyz)
    np.testing.assert_allclose(lat2, lat, atol=1e-9)
    np.testing.assert_allclose(lon2, lon, atol=1e-9)
    np.testing.assert_allclose(gm.lat_lon_to_cartesian(np.array([90.0]), np.array([0.0])), [[0, 0, 1]], atol=1e-15)
    # Latitude-major flattening.
    glat, glon = gm.grid_node_lat_lon(LAT, LON)
    assert glat[LON.size] == LAT[1] and glon[1] == LON[1]
    np.testing.assert_allclose(gm.grid_positions(LAT, LON), gm.lat_lon_to_cartesian(glat, glon), atol=1e-6)


def test_grid2mesh_radius_query_matches_brute_force(small):
    m, radius = small
    # Value from the reference (max chord of the 2-split mesh times 0.6).
    assert radius == pytest.approx(0.19495185613632202, rel=1e-7)
    grid, mesh_idx = gm.radius_query_edges(LAT, LON, m, radius)
    positions = gm.grid_positions(LAT, LON).astype(np.float64)
    dist = np.linalg.norm(positions[:, None] - m.vertices[None].astype(np.float64), axis=-1)
    expected_grid, expected_mesh = np.nonzero(dist <= radius)
    np.testing.assert_array_equal(grid, expected_grid)
    np.testing.assert_array_equal(mesh_idx, expected_mesh)
    assert grid.size == 1236  # the reference's count for this configuration
    # Every mesh node receives from at least one grid node at this resolution.
    assert np.bincount(mesh_idx, minlength=m.vertices.shape[0]).min() >= 1


def test_grid2mesh_precision_rule_float32_coordinates():
    """The reference casts grid lat/lon to float32; float64 coordinates would add 6 edges at
    0.25 degrees with mesh 6 (at grid nodes whose chord to a mesh node is within rounding of
    the radius).  Three latitude rows of that grid hold all six."""
    from scipy.spatial import cKDTree

    m = mesh.gencast_mesh(6)
    radius = gm.grid2mesh_radius(m, 0.6)
    lat = np.array([-59.5, 25.25, 54.75])
    lon = np.arange(0.0, 360.0, 0.25)
    g64, m64 = gm.radius_query_edges(lat, lon, m, radius)
    g32, m32 = gm.radius_query_edges(lat.astype(np.float32), lon.astype(np.float32), m, radius)
    np.testing.assert_array_equal(g64, g32)
    np.testing.assert_array_equal(m64, m32)
    in_float64 = cKDTree(m.vertices).query_ball_point(gm.grid_positions(lat, lon), r=radius)
    assert sum(len(n) for n in in_float64) == g32.size + 6


def _closest_distances_brute_force(points, m):
    """Distance from each point to each flat face, by dense sampling-free geometry."""
    v = m.vertices.astype(np.float64)
    a, b, c = (v[m.faces[:, i]] for i in range(3))
    n_p, n_f = points.shape[0], a.shape[0]
    p = np.repeat(points, n_f, axis=0)
    close = gm._closest_points_on_triangles(p, np.tile(a, (n_p, 1)), np.tile(b, (n_p, 1)), np.tile(c, (n_p, 1)))
    return np.linalg.norm(p - close, axis=-1).reshape(n_p, n_f)


def test_closest_point_on_triangle_regions():
    a, b, c = np.eye(3)[None, 0], np.eye(3)[None, 1], np.zeros((1, 3))
    cases = {  # query -> expected closest point
        (0.2, 0.2, 1.0): (0.2, 0.2, 0.0),  # interior
        (2.0, -1.0, 0.3): (1.0, 0.0, 0.0),  # vertex a
        (-1.0, -1.0, 0.0): (0.0, 0.0, 0.0),  # vertex c
        (0.5, -1.0, 0.0): (0.5, 0.0, 0.0),  # edge ca
        (1.0, 1.0, 0.0): (0.5, 0.5, 0.0),  # edge ab
    }
    for q, expected in cases.items():
        got = gm._closest_points_on_triangles(np.array([q]), a, b, c)
        np.testing.assert_allclose(got[0], expected, atol=1e-12)


def test_mesh2grid_containing_face(small):
    m, _ = small
    grid, mesh_idx = gm.in_mesh_triangle_edges(LAT, LON, m)
    n_grid = LAT.size * LON.size
    assert grid.size == mesh_idx.size == 3 * n_grid
    np.testing.assert_array_equal(grid, np.repeat(np.arange(n_grid), 3))
    positions = gm.grid_positions(LAT, LON).astype(np.float64)
    faces = gm.containing_faces(positions, m)
    np.testing.assert_array_equal(mesh_idx.reshape(-1, 3), m.faces[faces])
    dist = _closest_distances_brute_force(positions, m)
    chosen = dist[np.arange(n_grid), faces]
    np.testing.assert_allclose(chosen, dist.min(axis=1), rtol=0, atol=1e-12)
    # The radial projection of each grid point lies in (or on the border of) its face.
    v = m.vertices.astype(np.float64)[m.faces[faces]]  # (n, 3, 3)
    bary = np.linalg.solve(np.swapaxes(v, 1, 2), positions[..., None])[..., 0]
    assert np.all(bary >= -1e-6)


def test_containing_faces_bad_backend(small):
    with pytest.raises(ValueError, match="backend"):
        gm.containing_faces(np.ones((1, 3)), small[0], backend="magic")


def test_mesh2grid_numpy_backend_agrees_off_ties(small):
    m, _ = small
    positions = gm.grid_positions(LAT, LON)
    reference = gm.containing_faces(positions, m)  # default: the reference's trimesh rule
    ours = gm.containing_faces(positions, m, backend="numpy")
    differ = np.flatnonzero(ours != reference)
    assert 0 < differ.size <= 4  # the tie points of this grid (3 for mesh 2)
    dist = _closest_distances_brute_force(positions[differ].astype(np.float64), m)
    rows = np.arange(differ.size)
    # Where they differ, both faces are at the same distance: the points are ties.
    np.testing.assert_allclose(dist[rows, ours[differ]], dist[rows, reference[differ]], atol=1e-12)


TIES = Path(__file__).parent / "data" / "gencast" / "mesh2grid_ties.npz"


@pytest.mark.parametrize("case", ["deg10_mesh1", "deg10_mesh2", "deg1_mesh4", "deg1_mesh5"])
def test_mesh2grid_default_is_the_reference_assignment(case):
    """The default (trimesh) backend reproduces the reference's face at every grid node.

    ``mesh2grid_ties.npz`` holds the faces that the reference's two calls
    (``trimesh.Trimesh(vertices, faces)``, ``trimesh.proximity.closest_point``) returned on
    x86-64 (AVX2/AVX-512, NumPy 2.4; see ``make_mesh2grid_ties.py``) for grids with poles whose
    longitudes 0, 60, 180, 300 lie on the mesh's mirror planes (tie points).
    """
    golden = np.load(TIES)
    splits, n_lat, step = {"deg10_mesh1": (1, 19, 10.0), "deg10_mesh2": (2, 19, 10.0),
                           "deg1_mesh4": (4, 181, 1.0), "deg1_mesh5": (5, 181, 1.0)}[case]
    m = mesh.gencast_mesh(splits)
    lat = np.linspace(-90.0, 90.0, n_lat).astype(np.float32)
    lon = np.arange(0.0, 360.0, step).astype(np.float32)
    grid, mesh_idx = gm.in_mesh_triangle_edges(lat, lon, m)
    expected = m.faces[golden[case].astype(np.int64)]
    np.testing.assert_array_equal(mesh_idx.reshape(-1, 3), expected, err_msg=str(golden["platform"]))
    # The grid has tie points: the lowest-index rule of the NumPy backend differs there.
    numpy_faces = gm.containing_faces(gm.grid_positions(lat, lon), m, backend="numpy")
    n_ties = int((numpy_faces != golden[case]).sum())
    assert n_ties == {"deg10_mesh1": 4, "deg10_mesh2": 3, "deg1_mesh4": 42, "deg1_mesh5": 99}[case]


def test_mesh2grid_backend_errors(small, monkeypatch):
    with pytest.raises(ValueError, match="mesh2grid backend must be one of"):
        gm.check_mesh2grid_backend("scipy")
    # Without trimesh the default fails at once, naming the packages and the extra.
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match=r"trimesh and rtree.*assimilax\[gencast\]"):
        gm.containing_faces(np.ones((1, 3)), small[0])
    assert gm.containing_faces(np.ones((1, 3)), small[0], backend="numpy").shape == (1,)


def test_node_features_values():
    lat = np.array([0.0, 90.0, -30.0], np.float32)
    lon = np.array([0.0, 0.0, 90.0], np.float32)
    nodes, _ = gm.graph_spatial_features(
        node_lat=lat, node_lon=lon, senders=np.array([0]), receivers=np.array([1]), **GENCAST_FEATURES
    )
    # [cos(theta) = sin(lat), cos(lon), sin(lon)]
    expected = np.array([[0, 1, 0], [1, 1, 0], [-0.5, 0, 1]])
    np.testing.assert_allclose(nodes, expected, atol=1e-6)


def test_edge_features_local_frame(small):
    m, _ = small
    mlat, mlon = gm.mesh_node_lat_lon(m)
    s, r = mesh.faces_to_edges(m.faces)
    phi, theta = gm.lat_lon_to_spherical(mlat, mlon)
    rot = gm.local_rotation_matrices(phi, theta)
    local = np.einsum("nij,nj->ni", rot, gm.spherical_to_cartesian(phi, theta))
    np.testing.assert_allclose(local, np.tile([1.0, 0.0, 0.0], (local.shape[0], 1)), atol=1e-6)
    _, edges = gm.graph_spatial_features(node_lat=mlat, node_lon=mlon, senders=s, receivers=r, **GENCAST_FEATURES)
    assert edges.shape == (s.size, 4)
    assert edges[:, 0].max() == pytest.approx(1.0)
    np.testing.assert_allclose(edges[:, 0], np.linalg.norm(edges[:, 1:], axis=-1), atol=1e-12)
    # Local frames make the features invariant to a rotation about the polar axis.
    _, shifted = gm.graph_spatial_features(
        node_lat=mlat, node_lon=np.mod(mlon + np.float32(37.0), 360), senders=s, receivers=r, **GENCAST_FEATURES
    )
    # Up to float32 rounding of the shifted longitudes (~3e-5 degrees ~ 5e-7 rad), amplified
    # by the normalisation by the longest edge (~0.2): a few 1e-6.
    np.testing.assert_allclose(shifted, edges, atol=2e-5)


# Values computed with DeepMind's model_utils / grid_mesh_connectivity (commit 08cf736) on
# this small configuration; our features matched them bit for bit (float64).
def test_features_match_reference_values(small):
    m, radius = small
    mlat, mlon = gm.mesh_node_lat_lon(m)
    glat, glon = gm.grid_node_lat_lon(LAT, LON)
    s, r = mesh.faces_to_edges(m.faces)
    nodes, edges = gm.graph_spatial_features(node_lat=mlat, node_lon=mlon, senders=s, receivers=r, **GENCAST_FEATURES)
    np.testing.assert_allclose(
        nodes[:2],
        [[-0.18759244680404663, -0.49999991059303284, -0.866025447845459],
         [-0.39760467410087585, -0.3406781852245331, -0.9401799440383911]],
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        edges[:2],
        [[0.8491451131189536, -0.11714134313779813, -0.5291956618591758, -0.6536645013545572],
         [0.8491451277104324, -0.11714135247947888, -0.594695228512224, -0.5946956672437075]],
        rtol=1e-6,
    )
    assert np.abs(edges).sum() == pytest.approx(2127.5622423164004, rel=1e-9)
    gi, mi = gm.radius_query_edges(LAT, LON, m, radius)
    _, _, g2m = gm.bipartite_spatial_features(
        senders_lat=glat, senders_lon=glon, receivers_lat=mlat, receivers_lon=mlon,
        senders=gi, receivers=mi, **GENCAST_FEATURES,
    )
    np.testing.assert_allclose(
        g2m.sum(0), [910.8832770450315, -72.82674350169306, -7.441746013695622e-05, -0.00046320920581155445],
        rtol=1e-6, atol=1e-8,
    )
    assert np.abs(g2m).sum() == pytest.approx(2077.4879385167933, rel=1e-9)
