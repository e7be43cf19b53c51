"""`assimilax kolmogorov` end to end on a short configuration, and its errors."""

import json

import numpy as np
import pytest
import xarray as xr

from assimilax.cli import main


def test_job_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["kolmogorov", "-n", "6", "-T", "2", "--levels", "4", "--observe", "blocks",
                   "--filters", "fa-apf-local", "letkf", "forecast", "--no-progress", "-o", str(out)])
    assert status == 0
    assert "letkf" in capsys.readouterr().out
    ds = xr.open_dataset(out / "kolmogorov_twin.nc")
    assert dict(ds.sizes) == {"filter": 3, "time": 2, "y": 64, "x": 64}
    assert np.all(np.isfinite(ds["vorticity_mean"].values)) and np.all(ds["spread"].values > 0)
    assert np.all(ds["vorticity_variance"].values > 0) and np.all(np.isfinite(ds["skill"].values))
    np.testing.assert_allclose(ds["truth"].values.reshape(2, -1).std(), 3.7, rtol=0.3)  # the attractor (docs)
    assert json.loads(ds.attrs["configuration"])["observe"] == "blocks"
    for name in ("skill_spread.png", "maps.png", "summary.txt", "checkpoints/letkf.npz"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stride", "5"], "stride must divide 64, got 5"),
        (["--tile", "7"], "tile must divide 64, got 7"),
        (["--local-radius", "0"], "local_radius must be positive, got 0"),
        (["--particles", "1"], "particles must be at least 2"),
        (["--obs-fraction", "0"], "obs_fraction must be in [1e-6, inf)"),
        (["--seed", "-1"], "seed must be in [0, 2**32)"),
        (["--emulator", "/nonexistent/w.eqx"], "not found"),
    ],
)
def test_bad_options_are_one_line_with_status_2(tmp_path, capsys, args, message):
    assert main(["kolmogorov", "-T", "1", "--no-progress", "-o", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_local_update_is_chosen_by_name_and_a_bad_one_is_named():
    import assimilax as ax
    from assimilax_adapters.kolmogorov.experiment import KolmogorovExperiment, build_filters, observation_operator

    cfg = KolmogorovExperiment(particles=4, cycles=1, filters=("fa-apf-local-oracle",), local_update="transport")
    observation = ax.ObservationModel(observation_operator(cfg), ax.DiagonalGaussianNoise(0.4, 256))
    assert isinstance(build_filters(cfg, observation)["fa-apf-local-oracle"].update, ax.MarginalTransport)
    assert KolmogorovExperiment().local_update == "transform"
    with pytest.raises(ValueError, match="local_update must be one of"):
        KolmogorovExperiment(local_update="kalman")
