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


def test_stale_checkpoint_of_another_configuration_is_refused(tmp_path, capsys):
    """The audit's case: the same output folder, then ``--levels 8 --solver euler --ess-band
    0.5 0.9``.  The second run must not reuse the first run's checkpoint: it is refused with
    a message naming the filter, and ``--restart`` recomputes."""
    out = str(tmp_path / "X")
    first = ["lorenz96", "-n", "16", "-T", "6", "--spinup", "1", "--filters", "fa-apf", "--levels", "4",
             "-o", out, "--no-progress"]
    assert main(first) == 0
    capsys.readouterr()
    with xr.open_dataset(tmp_path / "X" / "lorenz96_twin.nc") as ds:
        first_analysis = ds["analysis"].values
    second = ["lorenz96", "-n", "16", "-T", "6", "--spinup", "1", "--filters", "fa-apf", "--levels", "8",
              "--solver", "euler", "--ess-band", "0.5", "0.9", "-o", out, "--no-progress"]
    assert main(second) == 2
    err = capsys.readouterr().err
    assert "belongs to a different run: its filter differ" in err and "--restart" in err
    assert main(second + ["--restart"]) == 0
    ds = xr.open_dataset(tmp_path / "X" / "lorenz96_twin.nc")
    assert json.loads(ds.attrs["configuration"])["levels"] == 8
    assert not np.allclose(ds["analysis"].values, first_analysis)  # recomputed, not the old data


def test_observe_abs_runs_and_observes_the_magnitude(tmp_path, capsys):
    """``--observe abs``: y = |x[obs]| + noise (R = 1), through the job's filters; a truth
    file records it and `--truth` reads it back."""
    from assimilax_adapters.lorenz96.truth import load_truth, save_truth

    out = tmp_path / "abs"
    args = ["lorenz96", "--particles", "16", "--cycles", "6", "--spinup", "1", "--levels", "6", "--observe", "abs",
            "--filters", "letkf", "fa-apf-local-oracle", "--no-progress"]
    assert main([*args, "--output", str(out)]) == 0
    ds = xr.open_dataset(out / "lorenz96_twin.nc")
    obs, truth = ds["observations"].values[:, ds["observed"].values], ds["truth"].values[:, ds["observed"].values]
    # 120 observations of |x| with unit noise: their mean error is N(0, 1/120), |x| vs x differs by ~2 E|x|
    assert abs(float(np.mean(obs - np.abs(truth)))) < 4 / np.sqrt(obs.size)
    assert json.loads(ds.attrs["configuration"])["observe"] == "abs"
    assert np.all(np.isfinite(ds["analysis"].values))
    path = tmp_path / "t.npz"
    save_truth(path, ds["truth"].values[[0, *range(6)]], obs, np.flatnonzero(ds["observed"].values), 0.3, 1.0, observe="abs")
    assert load_truth(path).observe == "abs"


def test_local_update_auto_takes_the_transform_for_linear_observations_only():
    """``local_update="auto"``: the second-order transform (no inflation, first-stage
    variance ``q^2``) for linear observations, the marginal transport with
    `local_inflation` and the variance ``R / 2`` for ``observe="abs"``; a given
    `local_predictive_variance` wins; bad values are refused naming the field."""
    import assimilax as ax
    from assimilax_adapters.lorenz96.experiment import TwinExperiment, build_filters

    for observe, update, inflation, variance in (
        ("identity", ax.SecondOrderTransform, 1.0, 0.3**2), ("abs", ax.MarginalTransport, 1.02, 0.5 * 1.5**2)
    ):
        cfg = TwinExperiment(particles=8, cycles=5, observe=observe, obs_std=1.5, filters=("fa-apf-local-oracle",))
        filt = build_filters(cfg)["fa-apf-local-oracle"]
        assert isinstance(filt.update, update) and filt.inflation == inflation
        assert filt.predictive_variance == pytest.approx(variance)
    given = TwinExperiment(particles=8, cycles=5, observe="abs", local_predictive_variance=0.0, filters=("fa-apf-local-oracle",))
    assert build_filters(given)["fa-apf-local-oracle"].predictive_variance == 0.0
    with pytest.raises(ValueError, match="local_predictive_variance must be at least 0"):
        TwinExperiment(local_predictive_variance=-0.1)
    forced = build_filters(TwinExperiment(particles=8, cycles=5, filters=("fa-apf-local-oracle",), local_update="resample"))
    assert isinstance(forced["fa-apf-local-oracle"].update, ax.CoupledResampling)
    with pytest.raises(ValueError, match="local_update must be one of"):
        TwinExperiment(local_update="kalman")
