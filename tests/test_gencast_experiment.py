"""`assimilax gencast` end to end on a tiny random checkpoint and a synthetic ERA5 truth.

Run as a subprocess (``python -m assimilax_adapters.gencast.cli gencast ...``) with XLA's CPU
backend optimisations off (compilation 5x faster; same computation) so that the whole job,
FA-APF and GenCast-sampler forecast, takes about 10 s.  Checks the NetCDF contents, figures,
summary, and that bad options give clear errors.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from assimilax_adapters.gencast import SamplerConfig, save_checkpoint, testing as T

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


def test_cli_writes_outputs(files):
    out = files / "out"
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5.nc",
            "-n", 4, "--levels", 2, "--solver", "euler", "--corrector-steps", 0, "--ess-band", 0.5, 0.75,
            "-o", out, "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("gencast_assimilation.nc", "maps.png", "skill_spread.png", "summary.txt", "checkpoints/fa-apf.npz"):
        assert (out / f).exists(), f
    ds = xr.load_dataset(out / "gencast_assimilation.nc")
    assert list(ds["filter"].values) == ["fa-apf", "forecast"]
    assert ds.sizes["time"] == 3
    assert set(ds["field"].values) == {"2m_temperature", "sea_surface_temperature", "temperature_500",
                                       "temperature_850", "total_precipitation_12hr"}
    for v in ("skill", "skill_latw", "spread", "spread_latw", "ess", "alpha"):
        assert np.all(np.isfinite(ds[v].values)), v
    assert ds["temperature_mean"].dims == ("filter", "time", "level", "lat", "lon")
    assert np.isnan(ds["sea_surface_temperature_truth"].values).any()  # land reintroduced
    assert ds.sizes["observation"] == 3 * 21
    assert "fa-apf skill" in (out / "summary.txt").read_text()


def test_cli_bad_options(files):
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "nope", "--truth", files / "era5.nc")
    assert r.returncode == 2 and "statistics folder" in r.stderr
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5.nc", "-n", 1)
    assert r.returncode == 2 and "particles must be at least 2" in r.stderr
    r = cli("--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5.nc",
            "--observe", "geopotential")
    assert r.returncode == 2 and "cannot observe" in r.stderr
