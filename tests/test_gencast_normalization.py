"""GenCast statistics, forcings and the emulator's affine maps against DeepMind's reference.

``tests/data/gencast/normalization_golden.npz`` was computed by the reference (graphcast
08cf736: ``data_utils.extract_inputs_targets_forcings`` with derived progress features,
``nan_cleaning.NaNCleaner`` filling SST with ``min_by_level``, ``normalization.normalize`` and
``InputsAndResiduals``'s target/prediction maps) on `testing.synthetic_era5(3, seed=1)` with the
statistics of `testing.synthetic_statistics_datasets()` (written here as NetCDF files in the
official layout and read back).  Tolerances: float32 arithmetic on values up to ~400,
``rtol = 1e-5`` (progress features ``atol = 2e-6``).
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from assimilax_adapters.gencast import data as Dt, normalization as N, testing as T
from assimilax_adapters.gencast.denoiser import stack_dataset
from assimilax_adapters.gencast.emulator import GenCastEmulator

GOLDEN = np.load(Path(__file__).parent / "data" / "gencast" / "normalization_golden.npz")
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stats")
    T.write_synthetic_statistics(folder)
    return N.Statistics.from_dir(folder)


@pytest.fixture(scope="module")
def emulator(stats):
    return GenCastEmulator.from_checkpoint(T.filter_checkpoint(), stats, T.synthetic_era5(3, seed=1))


def golden(prefix):
    return {k.split("/", 1)[1]: GOLDEN[k] for k in GOLDEN.files if k.startswith(prefix + "/")}


STATIC = ("land_sea_mask", "geopotential_at_surface")
DIMS = {1: ("time",), 2: ("time", "lon"), 3: ("time", "lat", "lon"), 4: ("time", "level", "lat", "lon")}


def as_dataset(arrays, ds):
    """Golden arrays (leading batch axis except static fields) as one sample's Dataset."""
    out = {k: (("lat", "lon"), v) if k in STATIC else (DIMS[v.ndim - 1], v[0]) for k, v in arrays.items()}
    return xr.Dataset(out, coords={"lat": ds.lat, "lon": ds.lon, "level": ds.level})


def test_statistics_files(stats, tmp_path):
    assert stats.mean("temperature", (500, 850)).shape == (2,)
    np.testing.assert_allclose(stats.diffs_std("2m_temperature"), [2.0])
    assert stats.std("not_there") is None
    with pytest.raises(FileNotFoundError, match="stddev_by_level"):
        (tmp_path / "mean_by_level.nc").write_bytes(b"")
        N.Statistics.from_dir(tmp_path)
    with pytest.raises(ValueError, match="level"):
        stats.mean("temperature", (500, 123))


def test_progress_features_match_reference():
    g = golden("progress")
    feats = Dt.progress_features(g["times"].astype("datetime64[s]"), g["lon"])
    for k in ("year_progress_sin", "year_progress_cos", "day_progress_sin", "day_progress_cos"):
        np.testing.assert_allclose(feats[k], g[k], rtol=0, atol=2e-6)
    s = Dt.seconds_since_epoch(g["times"].astype("datetime64[s]"))
    np.testing.assert_array_equal(Dt.year_progress(s), g["year_progress"])
    np.testing.assert_array_equal(Dt.day_progress(s, g["lon"]), g["day_progress"])


def test_xarray_maps_match_reference(stats):
    ds = T.synthetic_era5(3, seed=1)
    task = T.filter_task()
    inputs = ds.isel(time=[0, 1])
    targets = ds.isel(time=[2])[list(task.target_variables)]
    clean_in, clean_t = N.fill_nans(inputs, stats), N.fill_nans(targets, stats)
    z = N.normalized_target(clean_in[[v for v in task.input_variables if v in ds]], clean_t, stats)
    for k, v in golden("z").items():
        np.testing.assert_allclose(z[k].values, v[0], **TOL, err_msg=k)
    zr = xr.Dataset({k: (z[k].dims, v[0]) for k, v in golden("zr").items()}, coords=z.coords)
    pred = N.prediction_from_target(clean_in[[v for v in task.input_variables if v in ds]], zr, stats, raw_inputs=inputs)
    for k, v in golden("pred").items():
        np.testing.assert_allclose(pred[k].values, v[0], **TOL, err_msg=k)


def test_emulator_context_matches_reference(emulator):
    ds = T.synthetic_era5(3, seed=1)
    x = jnp.asarray(emulator.states(ds))
    forcing = {k: v[0] for k, v in emulator.forcings(ds.time.values[2:]).items()}
    ctx = emulator.context(x[:2], forcing)
    ref_in = as_dataset(golden("norm_inputs"), ds)
    np.testing.assert_allclose(np.asarray(ctx.inputs), stack_dataset(ref_in), **TOL)
    ref_f = as_dataset(golden("norm_forcings"), ds)
    np.testing.assert_allclose(np.asarray(ctx.forcings), stack_dataset(ref_f), **TOL)


def test_emulator_target_maps_match_reference(emulator):
    ds = T.synthetic_era5(3, seed=1)
    x = jnp.asarray(emulator.states(ds))
    z = np.asarray(emulator.to_target(x[2], x[:2]))
    ref = xr.Dataset({k: (("time", "level", "lat", "lon") if v.ndim == 5 else ("time", "lat", "lon"), v[0])
                      for k, v in golden("z").items()}, coords={"lat": ds.lat, "lon": ds.lon})
    z_ref = stack_dataset(ref.isel(time=0)).reshape(-1)
    land = np.asarray(emulator.target_index)[np.asarray(emulator.filled) > 0]
    sea = np.setdiff1d(np.arange(z.size), land)
    np.testing.assert_allclose(z[sea], z_ref[sea], **TOL)
    # the inverse, and the reference's prediction from its random target (NaN over land)
    zr = xr.Dataset({k: (("time", "level", "lat", "lon") if v.ndim == 5 else ("time", "lat", "lon"), v[0])
                     for k, v in golden("zr").items()}, coords={"lat": ds.lat, "lon": ds.lon})
    pred = np.asarray(emulator.to_state(jnp.asarray(stack_dataset(zr.isel(time=0)).reshape(-1)), x[:2]))
    ref_pred = xr.Dataset({k: (("time", "level", "lat", "lon") if v.ndim == 5 else ("time", "lat", "lon"), v[0])
                           for k, v in golden("pred").items()}, coords={"lat": ds.lat, "lon": ds.lon, "level": ds.level})
    ours = emulator.to_dataset(pred)
    for k in ref_pred.data_vars:
        np.testing.assert_allclose(ours[k].values, ref_pred[k].isel(time=0).values, **TOL, err_msg=k)
    np.testing.assert_allclose(np.asarray(emulator.to_target(jnp.asarray(pred), x[:2]))[sea], stack_dataset(zr.isel(time=0)).reshape(-1)[sea], rtol=1e-4, atol=1e-4)
