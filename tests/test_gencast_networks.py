"""Observation networks: the reference experiment's three scenarios (counts on the 1-degree grid,
from ``../shared/gencast-reference/observations``; skipped with a message where absent), the
user's own mask / coordinates / variances files, regridding, and the unit conversion."""

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from assimilax_adapters.gencast import config as C, networks as W, testing as T
from assimilax_adapters.gencast.emulator import state_layout

REFERENCE = T.reference_data_dir()
OBS = None if REFERENCE is None else REFERENCE / "observations"
STATS = None if REFERENCE is None else REFERENCE / "stats"
needs_reference = pytest.mark.skipif(
    OBS is None or not OBS.is_dir() or not STATS.is_dir(),
    reason="../shared/gencast-reference (the reference experiment's observation networks) is not on this machine",
)
LAT1, LON1 = np.linspace(-90.0, 90.0, 181), np.arange(360.0)


@pytest.fixture(scope="module")
def layout1():
    return state_layout(C.GENCAST_TASK, LAT1, LON1)


@pytest.fixture(scope="module")
def official():
    from assimilax_adapters.gencast.normalization import Statistics

    return Statistics.from_dir(STATS)


@needs_reference
def test_stations_satellite_counts_and_units(layout1, official):
    nets = W.reference_networks("stations+satellite", OBS)
    model, fields = W.network_observation_model(nets, layout1, official, "normalised")
    assert model.operator.obs_size == len(fields) == 6054 * 5 + 33898 * 13
    assert fields[:6054] == (("10m_u_component_of_wind", None),) * 6054
    assert fields[-1] == ("temperature", 1000)
    # Physical variances -> normalised noise: sqrt(var) / std of the field.
    std = np.asarray(model.noise.std)
    i_t2m = fields.index(("2m_temperature", None))
    np.testing.assert_allclose(std[i_t2m], np.sqrt(0.0025) / official.std("2m_temperature")[0], rtol=1e-6)
    i_t500 = fields.index(("temperature", 500))
    np.testing.assert_allclose(std[i_t500], np.sqrt(0.25) / official.std("temperature", (500,))[0], rtol=1e-6)
    # ... and kept as they are in physical units.
    phys, _ = W.network_observation_model(nets, layout1, official, "physical")
    np.testing.assert_allclose(np.asarray(phys.noise.std)[[i_t2m, i_t500]], [0.05, 0.5], rtol=1e-6)


@needs_reference
def test_subsampling_and_coarsening_counts(layout1, official):
    sub, sub_fields = W.network_observation_model(W.reference_networks("subsampling-4x4", OBS), layout1, official)
    assert sub.operator.obs_size == len(sub_fields) == 4140 * 14
    coarse, coarse_fields = W.network_observation_model(W.reference_networks("coarsening-4x4", OBS), layout1, official)
    # 181 = 4 x 45 + 1 latitudes (the north-pole row is left out), 360 = 4 x 90 longitudes.
    assert coarse.operator.obs_size == len(coarse_fields) == 45 * 90 * 14 == 56700
    assert np.allclose(np.asarray(sub.noise.std)[0], 0.1 / official.std("2m_temperature")[0], rtol=1e-6)
    # The block means are those of the field's first 180 rows; the subsampled points are grid_4x4.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(layout1.size), jnp.float32)
    inner = coarse.operator.inner
    t2m = np.asarray(x[layout1["2m_temperature"].offset:][: 181 * 360]).reshape(181, 360)
    expected = t2m[:180].reshape(45, 4, 90, 4).mean(axis=(1, 3)).reshape(-1)
    np.testing.assert_allclose(np.asarray(inner(x))[:4050], expected, rtol=1e-5, atol=1e-6)
    grid = np.load(OBS / "grid_4x4.npy")
    np.testing.assert_array_equal(np.asarray(sub.operator.inner(x))[:4140], t2m[grid])


def _tiny_layout():
    return state_layout(T.filter_task(), T.FILTER_LAT, T.FILTER_LON)


def test_user_files_mask_points_variances(tmp_path):
    layout = _tiny_layout()
    mask = np.zeros((7, 12), bool)
    mask[2, 3] = mask[4, 0] = True
    np.save(tmp_path / "mask.npy", mask)
    xr.Dataset({"m": (("latitude", "longitude"), mask[::-1].astype(np.int8))},
               coords={"latitude": T.FILTER_LAT[::-1], "longitude": T.FILTER_LON}).to_netcdf(tmp_path / "mask.nc")
    (tmp_path / "stations.csv").write_text("name,latitude,longitude\nA,0.0,30.0\nB,-30.0,15.0\n")
    np.save(tmp_path / "var.npy", np.array([0.04, 1.0]))
    a = W.network_from_file(tmp_path / "mask.npy", ["2m_temperature", "temperature"], tmp_path / "var.npy")
    b = W.network_from_file(tmp_path / "mask.nc", ["2m_temperature"], 0.04)
    np.testing.assert_array_equal(a.mask, b.mask)  # the NetCDF mask is sorted to increasing latitude
    c = W.network_from_file(tmp_path / "stations.csv", ["2m_temperature"])
    assert c.kind == "points" and c.points.shape == (2, 2)
    model, fields = W.network_observation_model([a, c], layout, None, "physical", default_std=0.3)
    assert len(fields) == 2 * 3 + 2  # 2 points x (t2m + 2 temperature levels), then 2 stations
    np.testing.assert_allclose(np.asarray(model.noise.std), [0.2, 0.2, 1, 1, 1, 1, 0.3, 0.3])
    x = jnp.arange(layout.size, dtype=jnp.float32)
    y = np.asarray(model.operator(x))
    t2m = np.asarray(x[layout["2m_temperature"].offset:][:84]).reshape(7, 12)
    np.testing.assert_allclose(y[:2], t2m[mask])
    # Station A sits on a grid point (lat 0 = row 3, lon 30 = column 1); B is interpolated.
    np.testing.assert_allclose(y[6], t2m[3, 1])
    np.testing.assert_allclose(y[7], 0.5 * (t2m[2, 0] + t2m[2, 1]))


def test_user_file_errors(tmp_path):
    layout = _tiny_layout()
    np.save(tmp_path / "big.npy", np.zeros((181, 360), bool))
    with pytest.raises(ValueError, match=r"mask of shape \(181, 360\), the grid is \(7, 12\)"):
        W.network_from_file(tmp_path / "big.npy", ["2m_temperature"]).instrument(layout)
    with pytest.raises(ValueError, match="not target variables"):
        W.network_from_file(tmp_path / "big.npy", ["geopotential"]).fields(layout)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        W.network_from_file(tmp_path / "nope.npy", ["2m_temperature"])
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="lat/latitude"):
        W.network_from_file(tmp_path / "bad.csv", ["2m_temperature"])
    np.save(tmp_path / "m.npy", np.eye(7, 12))
    np.save(tmp_path / "v3.npy", np.ones(3) * 0.1)
    net = W.network_from_file(tmp_path / "m.npy", ["2m_temperature", "temperature"], tmp_path / "v3.npy")
    assert net.field_variances(layout).tolist() == [0.1, 0.1, 0.1]  # one per field
    net = W.network_from_file(tmp_path / "m.npy", ["2m_temperature"], tmp_path / "v3.npy")
    with pytest.raises(ValueError, match="variances for 1 variables"):
        net.field_variances(layout)
    with pytest.raises(ValueError, match="unknown observation preset"):
        W.reference_networks("radar", tmp_path)


def test_regrid_mask_nearest():
    src = np.zeros((181, 360), bool)
    src[90, 0] = src[90, 359] = src[0, 45] = src[120, 200] = True  # (0, 0), (0, 359), (-90, 45), (30, 200)
    out = W.regrid_mask(src, T.FILTER_LAT, T.FILTER_LON)
    expected = np.zeros((7, 12), bool)
    expected[3, 0] = expected[0, 1] = expected[4, 7] = True  # 359 wraps to 0; 45 -> 30 or 60 (tie: first)
    np.testing.assert_array_equal(out, expected)
