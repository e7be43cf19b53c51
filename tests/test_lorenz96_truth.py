"""`assimilax lorenz96 --truth FILE`: the job on a given truth and observation sequence."""

import numpy as np
import pytest
import xarray as xr

from assimilax.cli import main
from assimilax_adapters.lorenz96 import experiment
from assimilax_adapters.lorenz96.truth import load_truth, save_truth

ARGS = ["--particles", "16", "--spinup", "1", "--levels", "4", "--no-progress"]


@pytest.mark.parametrize("suffix", [".npz", ".nc"])
def test_truth_file_reproduces_the_job_on_its_own_data(tmp_path, capsys, suffix):
    # The job's own truth, written to a file, must give the same analyses from --truth.
    cfg = experiment.TwinExperiment(particles=16, cycles=5, spinup=1, levels=4, filters=("letkf", "enkf"))
    xx, yy, _ = experiment.twin_data(cfg)
    path = tmp_path / f"truth{suffix}"
    save_truth(path, xx, yy, np.arange(0, 40, 2), q=0.3, r=1.0)
    filters = ["--filters", "letkf", "enkf"]
    assert main(["lorenz96", *ARGS, "--cycles", "5", *filters, "--output", str(tmp_path / "a")]) == 0
    assert main(["lorenz96", *ARGS, *filters, "--truth", str(path), "--output", str(tmp_path / "b")]) == 0
    assert "truth" in capsys.readouterr().out
    a = xr.open_dataset(tmp_path / "a" / "lorenz96_twin.nc")
    b = xr.open_dataset(tmp_path / "b" / "lorenz96_twin.nc")
    np.testing.assert_allclose(b["truth"].values, xx[1:], rtol=1e-6)
    np.testing.assert_array_equal(b["observed"].values, np.arange(40) % 2 == 0)
    np.testing.assert_allclose(b["analysis"].values, a["analysis"].values, rtol=1e-5, atol=1e-5)


def test_truth_with_other_observations_and_noise(tmp_path):
    rng = np.random.default_rng(0)
    d, k = 12, 6
    xx = 8 + rng.normal(size=(k + 1, d))
    obs_idx = np.array([7, 1, 4])  # unsorted: columns of yy follow obs_idx
    yy = xx[1:, obs_idx] + 0.5 * rng.normal(size=(k, 3))
    yy[2, 0] = np.nan  # missing
    path = tmp_path / "t.npz"
    save_truth(path, xx, yy, obs_idx, q=0.2, r=0.25)
    t = load_truth(path)
    assert t.obs_std == 0.5 and t.q == 0.2 and t.cycles == k and t.dim == d
    np.testing.assert_array_equal(t.obs_idx, [1, 4, 7])
    np.testing.assert_array_equal(t.yy[:, 2], yy[:, 0])
    cfg = experiment.TwinExperiment.from_truth(str(path), particles=8, spinup=1, levels=4, filters=("letkf", "etkf"))
    assert cfg.q == 0.2 and cfg.obs_std == 0.5 and cfg.dim == d
    ds = experiment.run(cfg, progress=False)
    assert np.isnan(ds["observations"].values[2, 7]) and np.isfinite(ds["observations"].values[2, 1])
    assert np.all(np.isfinite(ds["analysis"].values))


def test_bad_truth_files_are_named(tmp_path, capsys):
    xx = np.zeros((4, 40))
    path = tmp_path / "bad.npz"
    np.savez(path, xx=xx, yy=np.zeros((4, 20)), obs_idx=np.arange(0, 40, 2), q=0.3, r=1.0)
    assert main(["lorenz96", "--truth", str(path), "--spinup", "1", "--no-progress", "--output", str(tmp_path)]) == 2
    assert "yy must be (K, p) = (3, p)" in capsys.readouterr().err
    np.savez(path, xx=xx, yy=np.zeros((3, 20)), obs_idx=np.arange(0, 40, 2), q=0.3)
    assert main(["lorenz96", "--truth", str(path), "--spinup", "1", "--no-progress", "--output", str(tmp_path)]) == 2
    assert "lacks r" in capsys.readouterr().err
    np.savez(path, xx=xx, yy=np.zeros((3, 20)), obs_idx=np.arange(20), r=1.0, q=0.1)
    assert main(["lorenz96", "--truth", str(path), "--spinup", "1", "--no-progress", "--output", str(tmp_path)]) == 2
    assert "trained for q = 0.3" in capsys.readouterr().err
    assert main(["lorenz96", "--truth", str(tmp_path / "none.npz"), "--output", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
