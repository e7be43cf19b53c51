"""ERA5 (WeatherBench 2 / ARCO-ERA5 layout) -> GenCast inputs, on synthetic data."""

import numpy as np
import pytest
import xarray as xr

from assimilax_adapters.gencast import data as Dt


def arco_like(hours=37, step_h=1, precip="total_precipitation"):
    """A 22.5-degree stand-in for the 0.25-degree ARCO store: latitude 90 -> -90 (9 values),
    longitude 0..337.5 (16), hourly (or `step_h`-hourly) times from 2019-01-01T00."""
    lat = np.linspace(90.0, -90.0, 9)
    lon = np.arange(16) * 22.5
    times = np.datetime64("2019-01-01T00") + np.arange(hours) * np.timedelta64(step_h, "h")
    n = times.size
    k = np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(0)
    sst = 280.0 + rng.standard_normal((n, 9, 16))
    land = np.zeros((9, 16), bool)
    land[4, 0:8] = True  # the equator, longitudes 0..157.5
    sst[:, land] = np.nan
    sst[:, 0, 8] = -32767.0  # (90 N, 180 E): a fill value that survived decoding, not a sea temperature
    return xr.Dataset(
        {
            "2m_temperature": (("time", "latitude", "longitude"), 270.0 + rng.standard_normal((n, 9, 16))),
            precip: (("time", "latitude", "longitude"), np.broadcast_to((1e-4 * (k + 1))[:, None, None], (n, 9, 16)).copy()),
            "sea_surface_temperature": (("time", "latitude", "longitude"), sst),
            "temperature": (("time", "level", "latitude", "longitude"), 250.0 + rng.standard_normal((n, 3, 9, 16))),
            "land_sea_mask": (("time", "latitude", "longitude"), np.broadcast_to(land, (n, 9, 16)).astype(np.float32)),
            "geopotential_at_surface": (("latitude", "longitude"), np.zeros((9, 16))),
        },
        coords={"time": times, "latitude": lat, "longitude": lon, "level": [500, 850, 1000]},
    )


def test_hourly_arco_to_gencast(tmp_path):
    arco_like().to_netcdf(tmp_path / "arco.nc")
    src = xr.open_dataset(tmp_path / "arco.nc")
    out = Dt.era5_to_gencast(src, stride=4, levels=(500, 850))
    # Nothing read yet: the variables are still backed by the file.
    assert not out["2m_temperature"].variable._in_memory
    # Every 4th point of the ascending grid: the poles and the equator, longitudes 0, 90, 180, 270.
    np.testing.assert_array_equal(out["lat"].values, [-90.0, 0.0, 90.0])
    np.testing.assert_array_equal(out["lon"].values, [0.0, 90.0, 180.0, 270.0])
    np.testing.assert_array_equal(out["level"].values, [500, 850])
    # 12-hourly valid times with a full 12-hour window: 12 UTC and 00 UTC of the next day (and 12 UTC).
    np.testing.assert_array_equal(out["time"].values.astype("datetime64[h]"),
                                  np.array(["2019-01-01T12", "2019-01-02T00", "2019-01-02T12"], "datetime64[h]"))
    # tp12(t) = sum of the 12 hourly values ending at t; tp(hour k) = 1e-4 (k + 1).
    tp = out["total_precipitation_12hr"].values
    for i, hour in enumerate((12, 24, 36)):
        np.testing.assert_allclose(tp[i], 1e-4 * sum(k + 1 for k in range(hour - 11, hour + 1)), rtol=1e-12)
    assert "total_precipitation" not in out
    # Static fields lose their time axis; SST is NaN on land and at the non-physical value.
    assert out["land_sea_mask"].dims == ("lat", "lon")
    sst = out["sea_surface_temperature"].values
    src_sst = arco_like()["sea_surface_temperature"].isel(latitude=slice(None, None, -1)).values[12::12][:, ::4, ::4]
    expected_nan = ~np.isfinite(src_sst) | (src_sst <= 0)
    np.testing.assert_array_equal(np.isnan(sst), expected_nan)
    assert np.isnan(sst).any() and np.isfinite(sst).any()
    # The result is ready for the adapter's own preparation.
    prepared = Dt.prepare_dataset(out, (500, 850))
    assert prepared.sizes == {"time": 3, "lat": 3, "lon": 4, "level": 2}


def test_six_hourly_weatherbench_precipitation():
    src = arco_like(hours=7, step_h=6, precip="total_precipitation_6hr")  # 00, 06, ..., 36 h
    out = Dt.era5_to_gencast(src, variables=["2m_temperature", "total_precipitation_12hr"])
    assert sorted(out.data_vars) == ["2m_temperature", "geopotential_at_surface", "land_sea_mask", "total_precipitation_12hr"]
    np.testing.assert_array_equal(out["time"].values.astype("datetime64[h]"),
                                  np.array(["2019-01-01T12", "2019-01-02T00", "2019-01-02T12"], "datetime64[h]"))
    # tp6 at step k = 1e-4 (k + 1): tp12 at step k = 1e-4 (2k + 1).
    np.testing.assert_allclose(out["total_precipitation_12hr"].values[:, 0, 0], 1e-4 * np.array([5, 9, 13]), rtol=1e-12)


def test_era5_to_gencast_errors():
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        Dt.era5_to_gencast(arco_like(), stride=0)
    with pytest.raises(ValueError, match=r"lacks pressure level\(s\) \[700\]"):
        Dt.era5_to_gencast(arco_like(), levels=(500, 700))
    with pytest.raises(ValueError, match="no valid time at 00 or 12 UTC"):
        Dt.era5_to_gencast(arco_like(hours=6))
    with pytest.raises(ValueError, match=r"lacks \['geopotential'\]"):
        Dt.era5_to_gencast(arco_like(), variables=["geopotential"])
    gap = arco_like().drop_isel(time=[5])
    with pytest.raises(ValueError, match="lacks the times"):
        Dt.era5_to_gencast(gap)
