"""`assimilax gencast` refuses malformed inputs on load, naming the file and the variable.

Each case builds one bad input (truth, statistics or checkpoint) from the tiny random-weight
GenCast of `assimilax_adapters.gencast.testing` and checks the `assimilax.errors` class and
message twice: from `experiment.setup` and through the command line (``assimilax gencast``
in this process: exit status 2, the message on stderr as one line, no traceback).  Last, a
run killed with SIGKILL after its first checkpoint and run again gives the NetCDF of an
uninterrupted run, bit for bit.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from assimilax import cli as ax_cli
from assimilax.errors import FileFormatError, InvalidConfiguration, InvalidData
from assimilax_adapters.gencast import SamplerConfig, save_checkpoint, testing as T
from assimilax_adapters.gencast import experiment
from assimilax_adapters.gencast.checkpoint import CheckpointFormatError, load_checkpoint
from assimilax_adapters.gencast.experiment import GenCastExperiment
from assimilax_adapters.gencast.normalization import FILES, Statistics


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gencast_validation")
    save_checkpoint(root / "tiny.npz", T.filter_checkpoint(3, SamplerConfig(num_noise_levels=3)))
    T.write_synthetic_statistics(root / "stats")
    T.synthetic_era5(5, seed=2).to_netcdf(root / "era5.nc")
    return root


def _era5(files) -> xr.Dataset:
    return xr.load_dataset(files / "era5.nc")


def _stats_copy(files, tmp, change=None):
    """A copy of the statistics folder; `change(key, dataset)` returns the dataset to write."""
    folder = tmp / "stats_bad"
    folder.mkdir()
    for key, name in FILES.items():
        ds = xr.load_dataset(files / "stats" / name)
        ds = ds if change is None else change(key, ds)
        if ds is not None:
            ds.to_netcdf(folder / name)
    return folder


def _truncate(source, target):
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def _set_std(value):
    def change(key, ds):
        if key == "std":
            t = ds["temperature"].values.copy()
            t[list(ds["level"].values).index(850)] = value
            ds["temperature"] = ("level", t)
        return ds
    return change


def _times_6h(files, tmp):
    ds = _era5(files)
    times = ds["time"].values.copy()
    times[3:] -= np.timedelta64(6, "h")  # 12, 12, 6, 12 h steps
    ds.assign_coords(time=times).to_netcdf(tmp / "six_hours.nc")
    return tmp / "six_hours.nc"


def _wrong_levels(files, tmp):
    ds = _era5(files).assign_coords(level=[300, 1000])
    ds.to_netcdf(tmp / "levels.nc")
    return tmp / "levels.nc"


# case: (builder(files, tmp) -> {"checkpoint" | "stats" | "truth": path}, error class, regex of the message)
CASES = {
    "truth-no-temperature": (
        lambda f, t: {"truth": (_era5(f).drop_vars("temperature").to_netcdf(t / "no_temp.nc"), t / "no_temp.nc")[1]},
        FileFormatError, r"no_temp\.nc: not a GenCast truth: .*no variable\(s\) \['temperature'\]"),
    "truth-wrong-levels": (
        lambda f, t: {"truth": _wrong_levels(f, t)},
        FileFormatError, r"levels\.nc: .*lacks the pressure level\(s\) \[500, 850\] hPa"),
    **{f"truth-no-{c}": (
        lambda f, t, c=c: {"truth": (_era5(f).drop_vars(c).to_netcdf(t / f"no_{c}.nc"), t / f"no_{c}.nc")[1]},
        FileFormatError, rf"no_{c}\.nc: not a GenCast truth: no coordinate\(s\) \['{c}'\]")
       for c in ("lat", "lon", "time", "level")},
    "truth-not-12h": (
        lambda f, t: {"truth": _times_6h(f, t)},
        FileFormatError, r"six_hours\.nc: the truth's times must be 12 h apart .*2019-01-02T00:00 to 2019-01-02T06:00 is 6 h"),
    "truth-too-few-times": (
        lambda f, t: {"truth": (T.synthetic_era5(2).to_netcdf(t / "two_times.nc"), t / "two_times.nc")[1]},
        FileFormatError, r"two_times\.nc: the truth has 2 time\(s\) from the start; 3 are needed"),
    "truth-truncated": (
        lambda f, t: {"truth": _truncate(f / "era5.nc", t / "truncated.nc")},
        FileFormatError, r"truncated\.nc: cannot read the truth dataset as NetCDF \(OSError"),
    "truth-empty": (
        lambda f, t: {"truth": ((t / "empty.nc").write_bytes(b""), t / "empty.nc")[1]},
        FileFormatError, r"empty\.nc: the truth dataset is an empty file"),
    "truth-missing": (
        lambda f, t: {"truth": t / "absent.nc"},
        FileFormatError, r"absent\.nc: the truth dataset does not exist"),
    "stats-missing-file": (
        lambda f, t: {"stats": _stats_copy(f, t, lambda k, ds: None if k == "std" else ds)},
        FileFormatError, r"stats_bad: GenCast statistics file\(s\) \['std: stddev_by_level\.nc'\] missing"),
    "stats-missing-variable": (
        lambda f, t: {"stats": _stats_copy(f, t, lambda k, ds: ds.drop_vars("temperature") if k == "mean" else ds)},
        FileFormatError, r"mean_by_level\.nc: the statistics lack the variable\(s\) \['temperature'\]"),
    "stats-missing-level": (
        lambda f, t: {"stats": _stats_copy(f, t, lambda k, ds: ds.sel(level=[50, 300, 500]) if k == "diffs_std" else ds)},
        FileFormatError, r"diffs_stddev_by_level\.nc: 'temperature' lacks the pressure level\(s\) \[850\] hPa"),
    **{f"stats-std-{name}": (
        lambda f, t, v=v: {"stats": _stats_copy(f, t, _set_std(v))},
        FileFormatError, rf"stddev_by_level\.nc: the standard deviation of 'temperature' at level 850 is {text}: "
                         r"it must be finite and positive")
       for name, v, text in (("zero", 0.0, r"0\.0"), ("negative", -3.0, r"-3\.0"), ("inf", np.inf, "inf"))},
    "stats-truncated": (
        lambda f, t: {"stats": (s := _stats_copy(f, t), _truncate(f / "stats" / FILES["std"], s / FILES["std"]))[0]},
        FileFormatError, r"stddev_by_level\.nc: cannot read the GenCast statistics file \(std\) as NetCDF"),
    "checkpoint-missing": (
        lambda f, t: {"checkpoint": t / "absent.npz"},
        FileFormatError, r"absent\.npz: the GenCast checkpoint does not exist"),
    "checkpoint-truncated": (
        lambda f, t: {"checkpoint": _truncate(f / "tiny.npz", t / "truncated.npz")},
        CheckpointFormatError, r"truncated\.npz: not a GenCast checkpoint: not an \.npz \(zip\) archive, or one truncated"),
    "checkpoint-not-gencast": (
        lambda f, t: {"checkpoint": (np.savez(t / "other.npz", done=np.asarray(3)), t / "other.npz")[1]},
        CheckpointFormatError, r"other\.npz: not a GenCast checkpoint: Unexpected entry 'done'"),
}


def _paths(files, tmp, case):
    build, error, match = CASES[case]
    paths = {"checkpoint": files / "tiny.npz", "stats": files / "stats", "truth": files / "era5.nc"}
    paths.update(build(files, tmp))
    return paths, error, match


@pytest.mark.parametrize("case", sorted(CASES))
def test_setup_refuses(files, tmp_path, case):
    paths, error, match = _paths(files, tmp_path, case)
    cfg = GenCastExperiment(**{k: str(v) for k, v in paths.items()})
    with pytest.raises(error, match=match):
        experiment.setup(cfg)


def _cli(paths, capsys, *options):
    args = ["gencast", "--checkpoint", paths["checkpoint"], "--stats", paths["stats"], "--truth", paths["truth"],
            "-n", 2, "--no-progress", *options]
    status = ax_cli.main([str(a) for a in args])
    return status, capsys.readouterr().err


def _one_error_line(err: str, match: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("assimilax gencast: error: "), err
    import re

    assert re.search(match, lines[0]), (match, lines[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_refuses(files, tmp_path, capsys, case):
    paths, _, match = _paths(files, tmp_path, case)
    status, err = _cli(paths, capsys, "-o", tmp_path / "out")
    assert status == 2, err
    _one_error_line(err, match)
    assert not (tmp_path / "out" / "gencast_assimilation.nc").exists()


# ---------------------------------------------------------------------------------------
# Zarr without the zarr package
# ---------------------------------------------------------------------------------------


@pytest.fixture
def no_zarr(monkeypatch, tmp_path):
    store = tmp_path / "truth.zarr"
    store.mkdir()
    monkeypatch.setitem(sys.modules, "zarr", None)  # `import zarr` raises ImportError
    return store


def test_zarr_truth_without_zarr(files, no_zarr):
    cfg = GenCastExperiment(checkpoint=str(files / "tiny.npz"), stats=str(files / "stats"), truth=str(no_zarr))
    with pytest.raises(FileFormatError, match=r"truth\.zarr: the truth dataset is a Zarr store, and reading it needs the zarr package: pip install zarr"):
        experiment.setup(cfg)


def test_cli_zarr_truth_without_zarr(files, no_zarr, capsys, tmp_path):
    paths = {"checkpoint": files / "tiny.npz", "stats": files / "stats", "truth": no_zarr}
    status, err = _cli(paths, capsys, "-o", tmp_path / "out")
    assert status == 2
    _one_error_line(err, r"truth\.zarr: .*pip install zarr")


# ---------------------------------------------------------------------------------------
# The loaders themselves, and the configuration
# ---------------------------------------------------------------------------------------


def test_loaders_name_the_file(files, tmp_path):
    with pytest.raises(FileFormatError, match=r"stddev_by_level\.nc: the standard deviation of 'temperature' at level 850 is 0\.0"):
        Statistics.from_dir(_stats_copy(files, tmp_path, _set_std(0.0)))
    with pytest.raises(FileNotFoundError, match="absent"):  # a missing file is both
        load_checkpoint(tmp_path / "absent.npz")
    error = pytest.raises(CheckpointFormatError, load_checkpoint, _truncate(files / "tiny.npz", tmp_path / "t.npz"))
    assert isinstance(error.value, FileFormatError) and isinstance(error.value, InvalidData)
    assert error.value.path == str(tmp_path / "t.npz")


CONFIG_CASES = {
    "seed-negative": (dict(seed=-1), ["--seed", -1], r"seed must be at least 0, got -1"),
    "seed-too-large": (dict(seed=2**32), ["--seed", 2**32], r"seed must be below 4294967296, got 4294967296"),
    "corrector-negative": (dict(corrector_steps=-1), ["--corrector-steps", -1], r"corrector_steps must be at least 0, got -1"),
    "levels-one": (dict(levels=1), ["--levels", 1], r"levels must be at least 2, got 1"),
    "cg-zero": (dict(cg_iterations=0), ["--cg-iterations", 0], r"cg_iterations must be at least 1, got 0"),
    "langevin-inf": (dict(langevin_delta=float("inf")), ["--langevin-delta", "inf"], r"langevin_delta must be positive, got inf"),
    "obs-std-nan": (dict(obs_std=float("nan")), ["--obs-std", "nan"], r"obs_std must be positive, got nan"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_configuration_refused(case):
    fields, _, match = CONFIG_CASES[case]
    with pytest.raises(InvalidConfiguration, match=r"^invalid GenCast experiment: " + match):
        GenCastExperiment(checkpoint="c.npz", stats="s", truth="t.nc", **fields)


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_cli_configuration_refused(files, tmp_path, capsys, case):
    _, options, match = CONFIG_CASES[case]
    paths = {"checkpoint": files / "tiny.npz", "stats": files / "stats", "truth": files / "era5.nc"}
    status, err = _cli(paths, capsys, "-o", tmp_path / "out", *options)
    assert status == 2
    _one_error_line(err, match)


def test_configuration_lists_every_problem():
    # (Values of the wrong type, such as particles=2.5, are refused too; beartype refuses them first in the tests.)
    with pytest.raises(InvalidConfiguration) as info:
        GenCastExperiment(checkpoint="c", stats="s", truth="t", rho=0.0, sigma_min=1.0, sigma_max=0.5,
                          seed=True)
    assert info.value.problems == [
        "rho must be positive, got 0.0",
        "sigma_min and sigma_max must be finite with 0 < sigma_min < sigma_max, got 1.0 and 0.5",
        "seed must be an integer, got True",
    ]
    GenCastExperiment(checkpoint="c", stats="s", truth="t", seed=2**32 - 1, guidance_max_sigma=float("inf"))


# ---------------------------------------------------------------------------------------
# Killed with SIGKILL after a checkpoint, run again: the uninterrupted run's NetCDF
# ---------------------------------------------------------------------------------------

ENV = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"}
CYCLES = 10  # checkpoints every cycle: the kill lands after the first one


def _command(files, out, cache):
    args = ["--checkpoint", files / "tiny.npz", "--stats", files / "stats", "--truth", files / "era5_long.nc",
            "-n", 2, "--levels", 2, "--solver", "euler", "--corrector-steps", 0, "--ess-band", 0.5, 1.0,
            "--filters", "fa-apf", "-T", CYCLES, "--checkpoint-every", 1, "-o", out, "--no-progress", "--compile-cache", cache]
    return [sys.executable, "-m", "assimilax.cli", "gencast", *map(str, args)]


def _done(path) -> int | None:
    try:
        with np.load(path) as ckpt:
            return int(ckpt["done"])
    except (OSError, ValueError, KeyError, EOFError):
        return None


def test_killed_run_resumes_to_the_uninterrupted_result(files, tmp_path):
    T.synthetic_era5(CYCLES + 2, seed=5).to_netcdf(files / "era5_long.nc")
    cache = tmp_path / "xla_cache"  # the killed and resumed runs load the compiled step
    whole = subprocess.run(_command(files, tmp_path / "whole", cache), env=ENV, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "resumed"
    ckpt = out / "checkpoints" / "fa-apf.npz"
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(_command(files, out, cache), env=ENV, stdout=log, stderr=log)
        try:
            deadline, done = time.monotonic() + 300, None
            while time.monotonic() < deadline and proc.poll() is None:
                done = _done(ckpt) if ckpt.exists() else None
                if done is not None:
                    break
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    done = _done(ckpt)
    assert done is not None and 0 < done < CYCLES, done
    assert not (out / "gencast_assimilation.nc").exists()

    again = subprocess.run(_command(files, out, cache), env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    a = xr.load_dataset(tmp_path / "whole" / "gencast_assimilation.nc")
    b = xr.load_dataset(out / "gencast_assimilation.nc")
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        if name != "seconds":
            np.testing.assert_array_equal(b[name].values, a[name].values, err_msg=name)
    assert a.attrs["configuration"] == b.attrs["configuration"]
    # The resumed run ran only the cycles after the checkpoint (no timings for the others).
    seconds = b["seconds"].sel(filter="fa-apf").values
    assert np.isnan(seconds[:done]).all() and np.isfinite(seconds[done:]).all()
