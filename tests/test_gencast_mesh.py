"""Icosahedral meshes: counts, geometry, ordering against values from DeepMind's reference."""

import hashlib

import numpy as np
import pytest

from assimilax_adapters.gencast import config, mesh


@pytest.mark.parametrize("splits", range(6))
def test_counts_per_level(splits):
    m = mesh.finest_mesh(splits)
    assert m.vertices.shape == (10 * 4**splits + 2, 3) == (mesh.num_vertices(splits), 3)
    assert m.faces.shape == (20 * 4**splits, 3) == (mesh.num_faces(splits), 3)
    senders, receivers = mesh.faces_to_edges(m.faces)
    undirected = {tuple(sorted(e)) for e in zip(senders.tolist(), receivers.tolist())}
    assert len(undirected) == 30 * 4**splits
    # Euler characteristic of the sphere.
    assert m.vertices.shape[0] - len(undirected) + m.faces.shape[0] == 2
    # Closed and consistently oriented: every directed edge appears once each way.
    directed = set(zip(senders.tolist(), receivers.tolist()))
    assert len(directed) == senders.size
    assert all((r, s) in directed for s, r in directed)


@pytest.mark.parametrize("splits", [0, 3, 5])
def test_geometry(splits):
    m = mesh.finest_mesh(splits)
    assert m.vertices.dtype == np.float32 and m.faces.dtype == np.int32
    # On the unit sphere to float32 rounding (a few ulp).
    np.testing.assert_allclose(np.linalg.norm(m.vertices, axis=1), 1.0, rtol=0, atol=3e-7)
    # Counter-clockwise seen from outside: the normal points away from the origin.
    a, b, c = (m.vertices[m.faces[:, i]].astype(np.float64) for i in range(3))
    assert np.all(np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) > 0)
    # No duplicated vertices.
    assert np.unique(np.round(m.vertices, 5), axis=0).shape[0] == m.vertices.shape[0]


def test_hierarchy_is_nested_and_multimesh_counts():
    levels = mesh.mesh_hierarchy(4)
    for coarse, fine in zip(levels[:-1], levels[1:]):
        np.testing.assert_array_equal(coarse.vertices, fine.vertices[: coarse.vertices.shape[0]])
    multi = mesh.merge_meshes(levels)
    assert multi.vertices.shape[0] == 2562
    senders, _ = mesh.faces_to_edges(multi.faces)
    assert senders.size == mesh.num_multimesh_edges(4) == sum(60 * 4**r for r in range(5))
    # GraphCast's published multi-mesh M6: 40,962 nodes, 327,660 directed edges.
    assert mesh.num_vertices(6) == 40962 and mesh.num_multimesh_edges(6) == 327660


def test_icosahedron_orientation():
    ico = mesh.icosahedron()
    # A face, not a vertex, faces each pole: the highest vertex sits below the pole.
    z = ico.vertices[:, 2]
    np.testing.assert_allclose(np.sort(z)[-3:], 0.7946544, atol=1e-6)
    # All edges of the regular icosahedron inscribed in the unit sphere have the same length.
    lengths = mesh.edge_lengths(ico)
    np.testing.assert_allclose(lengths, 1 / np.sin(2 * np.pi / 5), rtol=1e-6)


# Computed with DeepMind's icosahedral_mesh.get_hierarchy_of_triangular_meshes_for_sphere(5)
# (graphcast commit 08cf736, numpy 2.4, scipy 1.17); our vertices matched it bit for bit.
_REFERENCE_FACES_SHA256_SPLITS5 = "ca6c0122b1e82849db25a0d2e169d9487bda7b44e4bfc8a469b48dbb7e08a983"
_REFERENCE_VERTICES_SPLITS5 = {
    0: (0.4911234378814697, 0.8506507873535156, 0.18759246170520782),
    5: (-0.9822469353675842, 0.0, 0.18759246170520782),
    11: (-0.6070619821548462, 0.0, -0.7946544289588928),
    12: (0.11026408523321152, 0.8090170621871948, 0.5773502588272095),
    100: (-0.43315425515174866, 0.4253254532814026, -0.7946544289588928),
    4321: (0.981906533241272, -0.09977643191814423, 0.16094793379306793),
    10241: (-0.7298133373260498, 0.5952228903770447, 0.3362770676612854),
}
# The reference's GenCast mesh (reverse Cuthill-McKee renumbering) for mesh_size 4.
_REFERENCE_GENCAST_FACES_SHA256_SPLITS4 = (
    "939d11d757dc8de64846516b8186874d8014de3c7af76fd8eebb93cccf41a431"
)


def _sha(faces):
    return hashlib.sha256(np.ascontiguousarray(faces, dtype=np.int32).tobytes()).hexdigest()


def test_matches_reference_ordering():
    m = mesh.finest_mesh(5)
    assert _sha(m.faces) == _REFERENCE_FACES_SHA256_SPLITS5
    for i, v in _REFERENCE_VERTICES_SPLITS5.items():
        # Identical on the reference machine; allow one float32 ulp elsewhere.
        np.testing.assert_allclose(m.vertices[i], np.float32(v), rtol=0, atol=1.2e-7)


def test_gencast_mesh_is_banded_permutation():
    fine = mesh.finest_mesh(4)
    g = mesh.gencast_mesh(4)
    assert _sha(g.faces) == _REFERENCE_GENCAST_FACES_SHA256_SPLITS4
    # Same mesh, relabelled.
    np.testing.assert_array_equal(np.sort(g.vertices, axis=0), np.sort(fine.vertices, axis=0))
    np.testing.assert_array_equal(
        np.sort(g.vertices[g.faces].reshape(-1, 9), axis=0),
        np.sort(fine.vertices[fine.faces].reshape(-1, 9), axis=0),
    )
    # Banded: the bandwidth is far below the node count.
    s, r = mesh.faces_to_edges(g.faces)
    s0, r0 = mesh.faces_to_edges(fine.faces)
    assert np.abs(s - r).max() < 0.1 * np.abs(s0 - r0).max()


def test_published_gencast_mesh_sizes():
    # README of google-deepmind/graphcast: 0p25deg -> 6, 1p0deg -> 5, 1p0deg Mini -> 4.
    assert config.PUBLISHED_MESH_SIZES == {
        "GenCast 0p25deg <2019": 6,
        "GenCast 0p25deg Operational <2022": 6,
        "GenCast 1p0deg <2019": 5,
        "GenCast 1p0deg Mini <2019": 4,
    }
    # GenCast attends on the finest mesh only: nodes 10*4^r+2, directed edges 60*4^r.
    counts = {r: (mesh.num_vertices(r), 3 * mesh.num_faces(r)) for r in (4, 5, 6)}
    assert counts == {4: (2562, 15360), 5: (10242, 61440), 6: (40962, 245760)}


def test_bad_inputs():
    with pytest.raises(ValueError, match="splits"):
        mesh.mesh_hierarchy(-1)
    with pytest.raises((ValueError, TypeError)):  # TypeError: jaxtyping's shape check
        mesh.faces_to_edges(np.zeros((4, 2), int))
    levels = mesh.mesh_hierarchy(1)
    with pytest.raises(ValueError, match="nested"):
        mesh.merge_meshes([levels[0], mesh.TriangularMesh(levels[1].vertices[::-1], levels[1].faces)])
