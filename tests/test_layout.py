"""Tests of assimilax.layout: Dataset <-> flat state round trips and error messages."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from assimilax.layout import StateLayout


def _dataset(n_time=3, seed=0):
    rng = np.random.default_rng(seed)
    lat = np.array([-45.0, 0.0, 45.0])
    lon = np.array([0.0, 90.0, 180.0, 270.0])
    level = np.array([500, 850])
    time = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[ns]")[:n_time]
    ds = xr.Dataset(
        {
            "t2m": (("time", "lat", "lon"), rng.normal(size=(n_time, 3, 4)), {"units": "K"}),
            "temperature": (
                ("time", "level", "lat", "lon"),
                rng.normal(size=(n_time, 2, 3, 4)),
                {"units": "K", "long_name": "air temperature"},
            ),
            "sst": (("time", "lon"), rng.normal(size=(n_time, 4)), {"units": "K"}),
        },
        coords={
            "time": time,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
            "level": ("level", level, {"units": "hPa"}),
        },
        attrs={"source": "test"},
    )
    return ds


def test_offsets_and_flatten_order():
    ds = _dataset()
    layout = StateLayout.from_dataset(ds)
    assert layout.names == ("t2m", "temperature", "sst")
    assert layout.size == 12 + 24 + 4
    assert layout.slice_of("t2m") == (0, (3, 4))
    assert layout.slice_of("temperature") == (12, (2, 3, 4))
    assert layout.slice_of("sst") == (36, (4,))
    x = layout.flatten(ds)
    assert x.shape == (3, 40)
    # Documented order: variables in order, each C-order flattened.
    np.testing.assert_array_equal(x[1, 12:36], ds.temperature.values[1].reshape(-1))
    np.testing.assert_array_equal(x[2, 36:], ds.sst.values[2])
    off, shape = layout.slice_of("temperature")
    block = x[0, off : off + np.prod(shape)].reshape(shape)
    np.testing.assert_array_equal(block, ds.temperature[0])


def test_round_trip_restores_coords_and_attrs():
    ds = _dataset()
    layout = StateLayout.from_dataset(ds)
    x = layout.flatten(ds)
    back = layout.unflatten(x, sample_coords={"time": ds.time.values})
    xr.testing.assert_identical(back, ds[["t2m", "temperature", "sst"]])
    # Default naming of the leading axis from the layout's sample dims; JAX input.
    back2 = layout.unflatten(jnp.asarray(x, dtype=jnp.float32))
    assert back2.t2m.dims == ("time", "lat", "lon")
    assert back2.temperature.attrs["long_name"] == "air temperature"
    np.testing.assert_array_equal(back2.lat.values, ds.lat.values)
    assert back2.lat.attrs == {"units": "degrees_north"}


def test_extra_leading_dims_and_transposed_input():
    ds = _dataset()
    layout = StateLayout.from_dataset(ds)
    # An ensemble with dims in another order: transposed by name.
    ens = xr.concat([ds, ds + 1.0], dim="particle")
    ens = ens.transpose("particle", "time", "lon", "lat", "level")
    x = layout.flatten(ens, sample_dims=("time", "particle"))
    assert x.shape == (3, 2, layout.size)
    np.testing.assert_allclose(x[:, 1], layout.flatten(ds) + 1.0)
    back = layout.unflatten(
        x, sample_dims=("time", "particle"), sample_coords={"time": ds.time.values}
    )
    assert back.temperature.dims == ("time", "particle", "level", "lat", "lon")
    np.testing.assert_allclose(back.t2m.isel(particle=1), ds.t2m + 1.0)
    # A single state: no leading axes.
    one = layout.flatten(ds.isel(time=0))
    assert one.shape == (layout.size,)
    single = layout.unflatten(one)
    assert single.t2m.dims == ("lat", "lon")
    np.testing.assert_array_equal(single.t2m.values, ds.t2m.values[0])


def test_single_vector_variable():
    layout = StateLayout.vector(40)
    assert layout.size == 40 and layout.slice_of("x") == (0, (40,))
    traj = np.arange(5 * 40.0).reshape(5, 40)
    ds = layout.unflatten(traj)
    assert ds.x.dims == ("time", "variable")
    np.testing.assert_array_equal(layout.flatten(ds), traj)
    ds2 = layout.unflatten(traj[:, None], sample_dims=("time", "particle"))
    assert ds2.x.shape == (5, 1, 40)


def test_hashable_and_static_friendly():
    ds = _dataset()
    a = StateLayout.from_dataset(ds)
    b = StateLayout.from_dataset(_dataset(n_time=2, seed=1))  # same layout, other data
    assert a == b and hash(a) == hash(b)
    assert a != StateLayout.from_dataset(ds, variables=["temperature", "t2m"])
    assert a != StateLayout.from_dataset(ds.assign_coords(lat=ds.lat + 1.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.sample_dims = ("x",)  # type: ignore[misc]

    # Usable as a static argument of jit and a static field of an equinox module.
    def level_means(x, layout):
        off, shape = layout.slice_of("temperature")
        return x[off : off + int(np.prod(shape))].reshape(shape).mean(axis=(1, 2))

    class Probe(eqx.Module):
        layout: StateLayout = eqx.field(static=True)

        def __call__(self, x):
            return level_means(x, self.layout)

    x = jnp.asarray(a.flatten(ds)[0])
    expected = ds.temperature.isel(time=0).mean(("lat", "lon"))
    np.testing.assert_allclose(jax.jit(level_means, static_argnums=1)(x, a), expected, rtol=1e-6)
    np.testing.assert_allclose(eqx.filter_jit(Probe(a))(x), expected, rtol=1e-6)


def test_variable_index():
    ds = _dataset()
    layout = StateLayout.from_dataset(ds)
    idx = layout.variable_index()
    assert idx.sizes["component"] == layout.size
    t = idx.where(idx.var_name == "temperature", drop=True)
    assert t.size == 24 and int(t[0]) == 12
    # Component 12 + (1, 2, 3) in C order is level 1, lat 2, lon 3.
    k = 12 + 1 * 12 + 2 * 4 + 3
    assert str(idx.var_name[k].values) == "temperature"
    assert (int(idx.level_index[k]), int(idx.lat_index[k]), int(idx.lon_index[k])) == (1, 2, 3)
    assert int(idx.position[k]) == k - 12
    assert int(idx.level_index[0]) == -1  # t2m has no level
    assert int(idx.lat_index[36]) == -1  # sst has no lat


def test_nan_allowed_unless_check_finite():
    ds = _dataset()
    layout = StateLayout.from_dataset(ds)
    bad = ds.copy(deep=True)
    bad["temperature"][0, 0, 0, 0] = np.nan
    x = layout.flatten(bad)
    assert np.isnan(x[0, 12])
    with pytest.raises(ValueError, match="'temperature' has 1 non-finite"):
        layout.flatten(bad, check_finite=True)


def test_errors_name_the_offender():
    ds = _dataset()
    layout = StateLayout.from_dataset(ds)
    with pytest.raises(ValueError, match=r"\['sst'\] missing"):
        layout.flatten(ds.drop_vars("sst"))
    with pytest.raises(ValueError, match="dimension 'lat' of variable 't2m' has size 2"):
        layout.flatten(ds.isel(lat=slice(0, 2)), check_coords=False)
    with pytest.raises(ValueError, match="'sst' lacks state dimension"):
        layout.flatten(ds.assign(sst=ds.sst.rename(lon="x")))
    with pytest.raises(ValueError, match="'sst' has sample dimensions"):
        layout.flatten(ds.assign(sst=ds.sst.isel(time=0)))
    with pytest.raises(ValueError, match="coordinate 'lat' of variable 't2m'"):
        layout.flatten(ds.isel(lat=slice(None, None, -1)))
    with pytest.raises(ValueError, match="state size 40"):
        layout.unflatten(np.zeros((3, 39)))
    with pytest.raises(ValueError, match="name them with sample_dims"):
        layout.unflatten(np.zeros((3, 2, 40)))
    with pytest.raises(ValueError, match="do not match"):
        layout.unflatten(np.zeros((3, 40)), sample_dims=("time", "particle"))
    with pytest.raises(ValueError, match="'q' is not a data variable"):
        StateLayout.from_dataset(ds, variables=["t2m", "q"])
    with pytest.raises(TypeError, match="to_dataset"):
        StateLayout.from_dataset(ds.t2m)
    with pytest.raises(KeyError, match="no variable 'q'"):
        layout.slice_of("q")
    # Extra variables (forcings) are ignored.
    assert layout.flatten(ds.assign(toa=ds.t2m * 0)).shape == (3, 40)
