"""The core experiment layer: `run_filters` / `FilterRuns.to_dataset` / `run_job` on a small
linear-Gaussian model (D = 6, every other component observed), with two filters."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import assimilax as ax

D, T, N = 6, 4, 16


def _job():
    rng = np.random.default_rng(0)
    F = 0.9 * np.eye(D)
    Q = 0.2 * np.eye(D)
    operator = ax.Selection.every(2, D)
    observation = ax.ObservationModel(operator, ax.DiagonalGaussianNoise(0.5, operator.obs_size))
    emulator = ax.LinearGaussianEmulator(F, Q)
    sampler = ax.Sampler(ax.EDMSchedule(1e-3, 20.0, 7.0), 8)
    filters = {"enkf": ax.StochasticEnKF(emulator, observation, sampler, 1.0),
               "forecast": ax.EnsembleForecast(emulator, observation, sampler)}
    truth = np.cumsum(rng.normal(size=(T + 1, D)), 0).astype(np.float32)
    ys = (truth[1:, ::2] + 0.5 * rng.normal(size=(T, D // 2))).astype(np.float32)
    ensemble = (truth[0] + rng.normal(size=(N, D))).astype(np.float32)
    return filters, ensemble, ys, truth


def test_runs_to_dataset_has_a_filter_dimension_and_the_core_scores():
    filters, ensemble, ys, truth = _job()
    runs = ax.experiment.run_filters(filters, ensemble, ys, jax.random.key(0), options=ax.experiment.RunOptions(progress=False))
    times = np.arange(1, T + 1)
    observed = np.arange(D) % 2 == 0
    ds = runs.to_dataset(filters, truth[1:], None, times, subsets={"observed": observed, "unobserved": ~observed})
    assert list(ds["filter"].values) == ["enkf", "forecast"]
    assert ds["x"].dims == ("filter", "time", "particle", "variable") and ds["x"].shape == (2, T, N, D)
    for name in filters:
        out = runs.results[name]
        np.testing.assert_array_equal(ds["x"].sel(filter=name).values, np.asarray(out.particles))
        np.testing.assert_array_equal(ds["ess"].sel(filter=name).values, np.asarray(out.diagnostics.ess))
        for subset, mask in (("observed", observed), ("unobserved", ~observed)):
            direct = ax.scores(out, truth[1:], mask)
            for score in ("skill", "spread", "crps"):
                np.testing.assert_allclose(ds[f"{score}_{subset}"].sel(filter=name).values, direct[score], rtol=1e-6)
        assert ds.attrs[f"filter_{name}"] == ax.describe(filters[name])
    assert np.all(ds["seconds"].values > 0) and np.all(ds["dropped"].values == 0)
    # The forecast ignores the observations: its observed-component error is the larger one.
    assert float(ds["skill_observed"].sel(filter="forecast").mean()) > float(ds["skill_observed"].sel(filter="enkf").mean())

    moments = runs.to_dataset(filters, truth[1:], None, times, ensembles=False)
    assert "x" not in moments and moments["x_mean"].dims == ("filter", "time", "variable")
    for name in filters:
        out = runs.results[name]
        w = jnp.exp(out.log_weights)
        np.testing.assert_allclose(moments["x_mean"].sel(filter=name).values,
                                   jax.vmap(ax.metrics.ensemble_mean)(out.particles, w), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(moments["skill"].sel(filter=name).values, ax.scores(out, truth[1:])["skill"], rtol=1e-6)


def test_run_job_writes_the_dataset_and_summary(tmp_path):
    filters, ensemble, ys, truth = _job()

    def summary(ds):
        return "\n".join(f"{n} {float(ds['skill'].sel(filter=n).mean()):.3f}" for n in ds["filter"].values) + "\n"

    ds = ax.experiment.run_job(
        filters, ensemble, ys, jax.random.key(0), dataset=lambda runs: runs.to_dataset(filters, truth[1:]),
        output=tmp_path, netcdf="job.nc", summary=summary, options=ax.experiment.RunOptions(progress=False),
    )
    back = xr.open_dataset(tmp_path / "job.nc")
    np.testing.assert_allclose(back["skill"].values, ds["skill"].values)
    assert back.attrs["failed_filters"] == "{}"
    assert (tmp_path / "summary.txt").read_text().splitlines()[0].startswith("enkf ")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["enkf.npz", "forecast.npz"]
