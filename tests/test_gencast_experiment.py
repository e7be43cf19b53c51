"""`assimilax gencast` end to end on a tiny random checkpoint and a synthetic ERA5 truth.

Run as a subprocess (``python -m assimilax_adapters.gencast.cli gencast ...``) with XLA's CPU
backend optimisations off (compilation 5x faster; same computation) so that the whole job,
FA-APF and GenCast-sampler forecast, takes about 10 s.  Checks the NetCDF contents, figures,
summary, that keeping only the ensemble moments gives the same scores, that ``--block-tiles``
runs the block FA-APF, and that bad options give clear errors.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from assimilax_adapters.gencast import SamplerConfig, save_checkpoint, testing as T
from assimilax_adapters.gencast import experiment
from assimilax_adapters.gencast.experiment import GenCastExperiment

ENV = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "assimilax_adapters.gencast.cli", "gencast", *map(str, args)],
                          env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gencast_cli")
    save_checkpoint(root / "tiny.npz", T.filter_checkpoint(3, SamplerConfig(num_noise_levels=3)))
    T.write_synthetic_statistics(root / "stats")
    T.synthetic_era5(5, seed=2).to_netcdf(root / "era5.nc")
    return root


def run_tiny(files, out, *options):
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5.nc",
            "-n", 4, "--levels", 2, "--solver", "euler", "--corrector-steps", 0, "--ess-band", 0.5, 0.75,
            "-o", out, "--no-progress", *options)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def ensemble_run(files):
    return run_tiny(files, files / "out", "--keep", "ensemble")


def test_cli_writes_outputs(ensemble_run):
    out = ensemble_run
    for f in ("gencast_assimilation.nc", "maps.png", "skill_spread.png", "summary.txt", "checkpoints/fa-apf.npz"):
        assert (out / f).exists(), f
    ds = xr.load_dataset(out / "gencast_assimilation.nc")
    assert list(ds["filter"].values) == ["fa-apf", "forecast"]
    assert ds.sizes["time"] == 3
    assert set(ds["field"].values) == {"2m_temperature", "sea_surface_temperature", "temperature_500",
                                       "temperature_850", "total_precipitation_12hr"}
    for v in ("skill", "skill_latw", "spread", "spread_latw", "crps", "crps_latw", "ess", "alpha"):
        assert np.all(np.isfinite(ds[v].values)), v
    assert ds["temperature_mean"].dims == ("filter", "time", "level", "lat", "lon")
    assert np.isnan(ds["sea_surface_temperature_truth"].values).any()  # land reintroduced
    assert ds.sizes["observation"] == 3 * 21
    assert "fa-apf skill" in (out / "summary.txt").read_text()


def test_cli_keep_moments_and_guidance_max_sigma(files, ensemble_run):
    # Guidance below 1000 > sigma_max = 88 is guidance at every level: the same filter as
    # the ensemble run's, so the same key gives the same analyses.
    out = run_tiny(files, files / "out_moments", "--keep", "moments", "--guidance-max-sigma", 1000)
    for f in ("gencast_assimilation.nc", "maps.png", "skill_spread.png", "summary.txt", "checkpoints/fa-apf.npz"):
        assert (out / f).exists(), f
    with np.load(out / "checkpoints" / "fa-apf.npz") as ckpt:
        assert "mean" in ckpt and "particles" not in ckpt
    ds = xr.load_dataset(out / "gencast_assimilation.nc")
    ref = xr.load_dataset(ensemble_run / "gencast_assimilation.nc")
    assert "crps" not in ds and "crps" in ref  # the CRPS needs the ensemble
    assert '"guidance_max_sigma": 1000.0' in ds.attrs["configuration"]
    assert "GuidanceBelowLevel" in ds.attrs["filter_fa-apf"]
    # Moments reduced in float32 in the compiled step vs from the host ensemble: rounding.
    for v in ("skill", "skill_latw", "spread", "spread_latw", "ess", "alpha", "temperature_mean", "temperature_spread"):
        np.testing.assert_allclose(ds[v].values, ref[v].values, rtol=1e-5, atol=1e-6, err_msg=v)


def test_cli_block_tiles(files):
    # 7 x 12 grid, tiles of 3 x 5 points: 3 x 3 blocks, the last row and column narrower.
    out = run_tiny(files, files / "out_block", "--block-tiles", 3, 5, "--filters", "fa-apf", "-T", 2)
    for f in ("gencast_assimilation.nc", "maps.png", "skill_spread.png", "summary.txt", "checkpoints/fa-apf-block.npz"):
        assert (out / f).exists(), f
    ds = xr.load_dataset(out / "gencast_assimilation.nc")
    assert list(ds["filter"].values) == ["fa-apf-block"] and ds.sizes["time"] == 2
    assert '"block_tiles": [3, 5]' in ds.attrs["configuration"]
    assert "BlockFAAPF" in ds.attrs["filter_fa-apf-block"]
    assert ds.attrs["localisation_fa-apf-block"].startswith("lat-lon tiles of 3 x 5 grid points")
    assert "9 blocks" in ds.attrs["localisation_fa-apf-block"]
    for v in ("skill", "skill_latw", "spread", "spread_latw", "crps", "ess", "alpha", "temperature_mean"):
        assert np.all(np.isfinite(ds[v].values)), v
    assert np.all((ds["alpha"].values > 0) & (ds["alpha"].values <= 1))
    assert "fa-apf-block skill" in (out / "summary.txt").read_text()


def test_block_tiles_validated(files):
    base = dict(checkpoint="c.npz", stats="s", truth="t.nc")
    for bad in ((0, 4), (3, -1)):
        with pytest.raises(ValueError, match="block_tiles must be two positive numbers"):
            GenCastExperiment(**base, block_tiles=bad)
    # Larger than the 7 x 12 grid: refused once the truth's grid is read, before the emulator is built.
    cfg = GenCastExperiment(checkpoint=str(files / "tiny.npz"), stats=str(files / "stats"),
                            truth=str(files / "era5.nc"), block_tiles=(8, 4))
    with pytest.raises(ValueError, match=r"block_tiles \(--block-tiles\) = \(8, 4\) grid points exceeds the grid of 7 x 12"):
        experiment.setup(cfg)


def test_experiment_validates_new_options():
    base = dict(checkpoint="c.npz", stats="s", truth="t.nc")
    with pytest.raises(ValueError, match="keep must be one of"):
        GenCastExperiment(**base, keep="particles")
    with pytest.raises(ValueError, match="guidance_max_sigma must be positive"):
        GenCastExperiment(**base, guidance_max_sigma=0.0)


def test_cli_bad_options(files):
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "nope", "--truth", files / "era5.nc")
    assert r.returncode == 2 and "statistics folder" in r.stderr
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5.nc", "-n", 1)
    assert r.returncode == 2 and "particles must be at least 2" in r.stderr
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5.nc",
            "--observe", "geopotential")
    assert r.returncode == 2 and "cannot observe" in r.stderr


# ---------------------------------------------------------------------------------------
# The reference experiment's observation scenarios and settings, on the tiny grid
# ---------------------------------------------------------------------------------------

REFERENCE = T.reference_data_dir()
OBS = None if REFERENCE is None else REFERENCE / "observations"
needs_networks = pytest.mark.skipif(
    OBS is None or not OBS.is_dir(),
    reason="../shared/gencast-reference/observations (the reference experiment's networks) is not on this machine",
)


@pytest.fixture(scope="module")
def preset_files(tmp_path_factory):
    """A tiny checkpoint whose task has GenCast's 5 surface variables (what the networks observe)."""
    root = tmp_path_factory.mktemp("gencast_presets")
    task = T.filter_task(T.PRESET_SURFACE)
    save_checkpoint(root / "tiny.npz", T.filter_checkpoint(3, SamplerConfig(num_noise_levels=3), task=task))
    T.write_synthetic_statistics(root / "stats")
    T.synthetic_era5(4, seed=2).to_netcdf(root / "era5.nc")
    return root


def run_preset(files, out, *options):
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5.nc",
            "-n", 4, "--levels", 2, "--solver", "euler", "--corrector-steps", 0, "--ess-band", 0.5, 0.75,
            "--filters", "fa-apf", "-T", 1, "-o", out, "--no-progress", *options)
    assert r.returncode == 0, r.stderr[-3000:]
    ds = xr.load_dataset(out / "gencast_assimilation.nc")
    for v in ("skill", "skill_latw", "spread", "spread_latw", "ess", "alpha", "temperature_mean"):
        assert np.all(np.isfinite(ds[v].values)), v
    summary = (out / "summary.txt").read_text()
    assert "latitude-weighted" in summary and "as in the reference's figures" in summary
    return ds


@needs_networks
@pytest.mark.parametrize("preset", ["stations+satellite", "subsampling-4x4", "coarsening-4x4"])
def test_cli_reference_observation_presets(preset_files, preset):
    ds = run_preset(preset_files, preset_files / preset, "--observations", preset, "--obs-dir", OBS,
                    "--regrid-observations")
    fields = ds["observation_field"].values
    if preset == "coarsening-4x4":
        # 7 latitudes = 4 + 3 (the remainder is left out), 12 = 3 x 4 longitudes: 3 blocks x 3 fields.
        assert fields.size == 9
    else:
        from assimilax_adapters.gencast import networks as W

        nets = W.reference_networks(preset, OBS)
        points = [int(W.regrid_mask(n.mask, T.FILTER_LAT, T.FILTER_LON).sum()) for n in nets]
        n_fields = [sum(2 if v == "temperature" else 1 for v in n.variables) for n in nets]  # 2 levels
        assert fields.size == sum(p * f for p, f in zip(points, n_fields))
    if preset == "stations+satellite":
        assert {"10m_u_component_of_wind", "mean_sea_level_pressure", "temperature_850"} <= set(fields)
        # SST observations over land are missing (NaN), the others are finite.
        obs = ds["observations"].values
        sst = fields == "sea_surface_temperature"
        assert np.isnan(obs[:, sst]).any() and np.isfinite(obs[:, ~sst]).all()


def test_cli_observation_files_and_reference_preset(preset_files, tmp_path):
    (tmp_path / "stations.csv").write_text("lat,lon\n0,30\n-30,15\n60,300\n")
    mask = np.zeros((7, 12), bool)
    mask[::2, ::3] = True
    np.save(tmp_path / "sat.npy", mask)
    np.save(tmp_path / "sat_var.npy", np.full((1, 2), 0.25))
    # The reference settings (BiCGStab MMPS, AB3 + Langevin) with a few of them overridden to keep it short.
    ds = run_preset(preset_files, tmp_path / "out", "--observations", "files",
                    "--obs-network", f"{tmp_path / 'stations.csv'}:2m_temperature,mean_sea_level_pressure:0.04",
                    "--obs-network", f"{tmp_path / 'sat.npy'}:temperature:{tmp_path / 'sat_var.npy'}",
                    "--preset", "reference", "--solver", "ab3", "--corrector-steps", 1, "--cg-iterations", 2)
    assert ds.sizes["observation"] == 3 * 2 + 16 * 2
    import json

    cfg = json.loads(ds.attrs["configuration"])
    assert cfg["mmps_solver"] == "bicgstab" and cfg["cg_iterations"] == 2 and cfg["langevin_delta"] == 0.2
    assert cfg["particles"] == 4 and cfg["levels"] == 2  # explicit options override the preset
    assert cfg["sigma_max"] == 88.0 and cfg["sigma_min"] == 2e-5 and cfg["rho"] == 6.0
    assert "BiCGStab" in ds.attrs["filter_fa-apf"]


def test_reference_preset_settings():
    cfg = GenCastExperiment.with_preset("reference", checkpoint="c", stats="s", truth="t")
    assert (cfg.particles, cfg.ess_band, cfg.levels, cfg.sigma_max, cfg.sigma_min, cfg.rho) == (
        256, (50 / 256, 60 / 256), 32, 88.0, 2e-5, 6.0)
    assert (cfg.solver, cfg.corrector_steps, cfg.langevin_delta) == ("ab3", 2, 0.2)
    assert (cfg.mmps_solver, cfg.cg_iterations) == ("bicgstab", 2)
    base = dict(checkpoint="c", stats="s", truth="t")
    with pytest.raises(ValueError, match="unknown preset"):
        GenCastExperiment.with_preset("fast", **base)
    with pytest.raises(ValueError, match="needs obs_dir"):
        GenCastExperiment(**base, observations="coarsening-4x4")
    with pytest.raises(ValueError, match="FILE:VAR1,VAR2"):
        GenCastExperiment(**base, observations="files", obs_networks=("mask.npy",))
    with pytest.raises(ValueError, match="need observations 'files'"):
        GenCastExperiment(**base, obs_networks=("mask.npy:2m_temperature",))


def test_sharded_over_four_devices_writes_the_one_device_outputs(files):
    """8 particles over 4 forced host devices, chunks of 1 (< N / 4): the NetCDF equals the
    1-device run's to float32 rounding (ancestors and tempering alpha identical).

    The states are physical values up to about 310 K, whose float32 spacing is 3e-5; the
    tolerance is 8 spacings of the largest truth value, and rtol 1e-4 because the tiny random
    model amplifies rounding: its spreads grow to about 230 K in 3 cycles, and differences
    of 2.4e-5 relative were measured there.  The alphas must be identical."""
    forced = {**ENV, "XLA_FLAGS": ENV["XLA_FLAGS"] + " --xla_force_host_platform_device_count=4"}

    def run(out, *options):
        args = ["--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5.nc",
                "-n", 8, "--levels", 2, "--solver", "euler", "--corrector-steps", 0, "--ess-band", 0.5, 0.75,
                "-o", out, "--no-progress", *options]
        r = subprocess.run(
            [sys.executable, "-m", "assimilax_adapters.gencast.cli", "gencast", *map(str, args)],
            env=forced, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return xr.load_dataset(out / "gencast_assimilation.nc")

    one = run(files / "one_device", "--devices", 1)
    four = run(files / "four_devices", "--devices", 4, "--chunk-size", 1)
    assert set(four.data_vars) == set(one.data_vars)
    scale = max(float(np.nanmax(np.abs(one[v].values))) for v in one.data_vars if v.endswith("_truth"))
    atol = 8 * float(np.spacing(np.float32(scale)))
    for name in one.data_vars:
        if name == "seconds":
            continue
        if one[name].dtype.kind in "fc":
            np.testing.assert_allclose(four[name].values, one[name].values, rtol=1e-4, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(four[name].values, one[name].values, err_msg=name)
    np.testing.assert_array_equal(four["alpha"].values, one["alpha"].values)


@pytest.mark.parametrize("store", ["netcdf", "zarr"])
def test_truth_is_read_lazily(files, store):
    path = files / "era5.nc"
    if store == "zarr":
        pytest.importorskip("zarr")
        path = files / "era5.zarr"
        if not path.exists():
            xr.load_dataset(files / "era5.nc").to_zarr(path)
    cfg = GenCastExperiment(checkpoint=str(files / "tiny.npz"), stats=str(files / "stats"), truth=str(path))
    emulator, _, _, ds, history = experiment.setup(cfg)
    # Nothing of the trajectory is in memory after the set-up (only the 2 history times were read) ...
    assert not any(ds[v].variable._in_memory for v in ds.data_vars if "time" in ds[v].dims)
    eager = emulator.states(xr.load_dataset(files / "era5.nc"))
    np.testing.assert_array_equal(history, eager[:2])
    # ... and the truth states, read one time at a time, are those of the whole file.
    np.testing.assert_array_equal(np.stack(list(experiment.truth_states(emulator, ds))), eager[2:])
