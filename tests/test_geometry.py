"""Geometries, the Gaspari-Cohn taper and localisation by distance (exact references)."""

import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax


def test_periodic1d_distances():
    ring = ax.Periodic1D(40.0)
    a = jnp.array([[0.0], [1.0], [39.0], [10.0]])
    got = np.asarray(ring.pairwise(a, a))
    want = np.array([[0, 1, 1, 10], [1, 0, 2, 9], [1, 2, 0, 11], [10, 9, 11, 0]], float)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert float(ring.distance(jnp.array([0.0]), jnp.array([20.0]))) == 20.0


def test_periodic2d_distances():
    torus = ax.Periodic2D((10.0, 4.0))
    d = torus.distance(jnp.array([0.5, 0.5]), jnp.array([9.5, 3.5]))
    np.testing.assert_allclose(float(d), np.sqrt(1.0**2 + 1.0**2), rtol=1e-6)
    d = torus.distance(jnp.array([0.0, 0.0]), jnp.array([3.0, 2.0]))
    np.testing.assert_allclose(float(d), np.hypot(3.0, 2.0), rtol=1e-6)


def test_latlon_great_circle(x64):
    sphere = ax.LatLon(radius=1.0)
    assert np.isclose(float(sphere.distance(jnp.array([0.0, 0.0]), jnp.array([0.0, 90.0]))), np.pi / 2)
    assert np.isclose(float(sphere.distance(jnp.array([90.0, 0.0]), jnp.array([-90.0, 45.0]))), np.pi)
    assert np.isclose(float(sphere.distance(jnp.array([0.0, 170.0]), jnp.array([0.0, -170.0]))), np.deg2rad(20))
    # Against the angle between unit vectors (an independent formula).
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-90, 90, 30), rng.uniform(-180, 180, 30)])
    lat, lon = np.deg2rad(pts).T
    v = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    cross = np.linalg.norm(np.cross(v[:, None], v[None]), axis=-1)
    want = np.arctan2(cross, v @ v.T)
    np.testing.assert_allclose(np.asarray(sphere.pairwise(jnp.asarray(pts), jnp.asarray(pts))), want, atol=1e-10)


def test_gaspari_cohn_values():
    gc = ax.GaspariCohn(2.0)
    z = jnp.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    rho = np.asarray(gc(z))
    # z = r / c = 0, 0.5, 1, 1.5, 2, 2.5 (Gaspari & Cohn 1999, eq. 4.10 by hand)
    inner = lambda t: -t**5 / 4 + t**4 / 2 + 5 * t**3 / 8 - 5 * t**2 / 3 + 1  # noqa: E731
    outer = lambda t: t**5 / 12 - t**4 / 2 + 5 * t**3 / 8 + 5 * t**2 / 3 - 5 * t + 4 - 2 / (3 * t)  # noqa: E731
    want = [1.0, inner(0.5), inner(1.0), outer(1.5), 0.0, 0.0]
    np.testing.assert_allclose(rho, want, atol=1e-6)
    assert np.isclose(inner(1.0), outer(1.0))  # continuous at r = c
    r = jnp.linspace(0, 5, 501)
    values = np.asarray(gc(r))
    # Non-increasing up to float32 cancellation near the edge of the support (values ~1e-7).
    assert np.all(np.diff(values) <= 1e-6) and values.min() >= 0 and gc.support == 4.0


def test_gaspari_cohn_is_positive_definite_and_gaussian_near_zero(x64):
    # A correlation function on R^3, so on points of a line.
    gc = ax.GaspariCohn(3.0)
    x = np.linspace(0, 20, 60)
    c = np.asarray(gc(jnp.asarray(np.abs(x[:, None] - x[None]))))
    assert np.linalg.eigvalsh(c).min() > -1e-12
    # c = sqrt(10/3) L matches exp(-r^2 / (2 L^2)) to second order at r = 0.
    L = 4.0
    tap = ax.GaspariCohn.from_length_scale(L)
    r = 1e-3
    assert np.isclose((1 - float(tap(jnp.asarray(r)))) / (r**2 / (2 * L**2)), 1.0, rtol=1e-3)
    assert np.isclose(tap.half_width, np.sqrt(10 / 3) * L)


def test_distance_localisation_from_selection():
    d = 40
    op = ax.Selection.every(2, d, offset=1)
    loc = ax.DistanceLocalisation.from_operator(ax.Periodic1D(d), np.arange(d), op, ax.GaspariCohn(5.0))
    np.testing.assert_array_equal(np.asarray(loc.obs_points[:, 0]), np.arange(1, d, 2))
    w = np.asarray(loc.weights(jnp.array([0.0])))
    assert w.shape == (20,) and np.isclose(w[0], w[-1])  # components 1 and 39 are both 1 away
    assert w[5] == 0.0  # component 11 is 11 > 2 c = 10 away


def test_interpolation_observation_placed_at_largest_weight():
    op = ax.MatrixOperator(np.array([[0.0, 0.2, 0.8, 0.0], [0.7, 0.0, 0.0, 0.3]]))
    loc = ax.DistanceLocalisation.from_operator(ax.Periodic1D(4.0), np.arange(4), op, ax.NoTaper())
    np.testing.assert_array_equal(np.asarray(loc.obs_points[:, 0]), [2.0, 0.0])


def test_bad_geometry_input_is_named():
    with pytest.raises(ValueError, match="state_points must have shape"):
        ax.DistanceLocalisation(ax.LatLon(), np.zeros(5), np.zeros((2, 2)), ax.NoTaper())
    with pytest.raises(ValueError, match="latitudes"):
        ax.DistanceLocalisation(ax.LatLon(), np.array([[100.0, 0.0]]), np.zeros((2, 2)), ax.NoTaper())
    with pytest.raises(ValueError, match="obs_points contain NaN"):
        ax.DistanceLocalisation(ax.Periodic1D(4.0), np.arange(4), np.array([0.0, np.nan]), ax.NoTaper())
    with pytest.raises(ValueError, match="half_width"):
        ax.GaspariCohn(0.0)
    with pytest.raises(ValueError, match="length"):
        ax.Periodic1D(-1.0)
    with pytest.raises(ValueError, match="does not depend"):
        ax.DistanceLocalisation.from_operator(
            ax.Periodic1D(3.0), np.arange(3), ax.MatrixOperator(np.zeros((1, 3))), ax.NoTaper()
        )
