"""Reliability of runs and of the command line: no NaN leaves a filter silently, a
diverging filter does not lose the others, every user error is one line, a killed run
resumes bit-identically.  (The Python API's argument checks: tests/test_errors.py and
tests/test_properties.py; GenCast's inputs: tests/test_gencast_validation.py.)"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import assimilax as ax
from assimilax.cli import main
from assimilax.errors import NonFiniteError

FAST = ["--particles", "8", "--cycles", "3", "--spinup", "1", "--levels", "3", "--no-progress"]


def _bad_emulator(folder: Path) -> Path:
    """The shipped Lorenz-96 emulator with every weight times 1e18: finite weights (they pass
    the loader's checks) whose denoiser overflows to inf, so the FA-APF's analysis is NaN."""
    import importlib.resources

    import equinox as eqx

    from assimilax_adapters.lorenz96.emulator import DEFAULT_WEIGHTS, load_emulator, save_emulator

    shipped = Path(str(importlib.resources.files("assimilax_adapters.lorenz96").joinpath("weights", DEFAULT_WEIGHTS)))
    bad = jax.tree.map(lambda a: a * 1e18 if eqx.is_inexact_array(a) else a, load_emulator())
    path = folder / "overflowing.eqx"
    save_emulator(path, bad, json.loads(shipped.with_suffix(".json").read_text()))
    return path


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_diverging_filter_does_not_lose_the_others(tmp_path, capsys):
    """``fa-apf`` on an overflowing emulator turns NaN at cycle 0; the EnKF (true model)
    finishes.  Its results are written, the failure is named in the attributes and the
    summary, and the command exits 1 with one line naming the filter and the cycle."""
    out = tmp_path / "run"
    status = main(["lorenz96", *FAST, "--filters", "fa-apf", "enkf", "--emulator", str(_bad_emulator(tmp_path)), "-o", str(out)])
    captured = capsys.readouterr()
    assert status == 1
    line = _one_error_line(captured.err)
    assert "fa-apf: the analysis of cycle 0 holds NaN or inf in its particles" in line
    ds = xr.open_dataset(out / "lorenz96_twin.nc")
    assert list(ds["filter"].values) == ["enkf"]
    assert np.all(np.isfinite(ds["analysis"].values))
    assert "cycle 0" in json.loads(ds.attrs["failed_filters"])["fa-apf"]
    assert "FAILED fa-apf" in (out / "summary.txt").read_text() and "FAILED fa-apf" in captured.out


def test_resample_policy_drops_the_nonfinite_particles_and_counts_them():
    """A model that is NaN for particles with x[0] > 1: the 3 particles started above 1 are
    dropped at cycle 0 and replaced by copies of finite ones, counted in `dropped`; with the
    default policy the run stops naming the particles.  (The forecast has no weights; the
    bootstrap PF's NaN likelihoods make every weight NaN, so there the finite particles
    count equally: tested below.)"""
    d = 2
    observation = ax.ObservationModel(ax.Selection.every(1, d), ax.DiagonalGaussianNoise(1.0, d))
    emulator = ax.GaussianTransitionEmulator(lambda x: jnp.where(x[0] > 1.0, jnp.nan, 0.5 * x), 1e-2 * np.eye(d))
    filt = ax.EnsembleForecast(emulator, observation, ax.Sampler(n_levels=4))
    x0 = np.zeros((8, d), np.float32)
    x0[:3, 0] = 2.0
    ys = np.zeros((3, d), np.float32)
    _, out = ax.assimilate(filt, filt.init(x0), ys, jax.random.key(0), progress=False, on_nonfinite="resample")
    np.testing.assert_array_equal(np.asarray(out.diagnostics.dropped), [3, 0, 0])
    assert np.all(np.isfinite(np.asarray(out.particles))) and np.all(np.isfinite(np.asarray(out.log_weights)))
    with pytest.raises(NonFiniteError, match=r"EnsembleForecast: the analysis of cycle 0 .*particles.*3 of 8 particles") as caught:
        ax.assimilate(filt, filt.init(x0), ys, jax.random.key(0), progress=False)
    assert caught.value.cycle == 0 and "particles" in caught.value.what


def test_a_filter_with_no_finite_particle_stops_even_when_resampling():
    d = 2
    observation = ax.ObservationModel(ax.Selection.every(1, d), ax.DiagonalGaussianNoise(1.0, d))
    emulator = ax.GaussianTransitionEmulator(lambda x: x * jnp.nan, 1e-2 * np.eye(d))
    filt = ax.EnsembleForecast(emulator, observation, ax.Sampler(n_levels=4))
    with pytest.raises(NonFiniteError, match="8 of 8 particles"):
        ax.assimilate(filt, filt.init(np.zeros((8, d))), np.zeros((2, d)), jax.random.key(0), progress=False,
                      on_nonfinite="resample")


def _write_empty(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def _write_truncated(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, done=np.asarray(3), fingerprint=np.asarray("{}"))
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize(
    "make, args, message",
    [
        (None, ["--corrector-steps", "-1"], "corrector_steps must be at least 0, got -1"),
        (None, ["--seed", str(2**70)], "seed must be in [0, 2**32)"),
        (None, ["--obs-std", "1e-30"], "obs_std must be at least 1e-6"),
        (None, ["--q", "nan"], "q must be finite"),
        (None, ["--checkpoint-every", "0"], "--checkpoint-every 0: must be a positive integer"),
        (None, ["--chunk-size", "0"], "--chunk-size 0: must be a positive integer"),
        ("empty-checkpoint", [], "cannot be read"),
        ("truncated-checkpoint", [], "cannot be read"),
        ("output-under-a-file", [], "Not a directory"),
        ("emulator-without-q", [], "lacks 'q'"),
        ("truncated-truth", [], "not a readable NetCDF truth file"),
        ("empty-truth", [], "not a readable .npz truth file"),
    ],
)
def test_bad_command_lines_are_one_line_with_status_2(tmp_path, capsys, make, args, message):
    out = tmp_path / "out"
    extra = []
    if make == "empty-checkpoint":
        _write_empty(out / "checkpoints" / "enkf.npz")
    elif make == "truncated-checkpoint":
        _write_truncated(out / "checkpoints" / "enkf.npz")
    elif make == "output-under-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    elif make == "emulator-without-q":
        weights = _bad_emulator(tmp_path)
        meta = json.loads(weights.with_suffix(".json").read_text())
        del meta["q"]
        weights.with_suffix(".json").write_text(json.dumps(meta))
        extra = ["--emulator", str(weights), "--filters", "fa-apf"]
    elif make == "truncated-truth":
        truth = tmp_path / "truth.nc"
        xr.Dataset({"xx": (("t", "d"), np.zeros((4, 8)))}).to_netcdf(truth)
        truth.write_bytes(truth.read_bytes()[:100])
        extra = ["--truth", str(truth)]
    elif make == "empty-truth":
        (tmp_path / "truth.npz").write_bytes(b"")
        extra = ["--truth", str(tmp_path / "truth.npz")]
    status = main(["lorenz96", *FAST, "--filters", "enkf", "-o", str(out), *args, *extra])
    assert status == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_restart_overwrites_an_unreadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    _write_empty(out / "checkpoints" / "enkf.npz")
    assert main(["lorenz96", *FAST, "--filters", "enkf", "-o", str(out), "--restart"]) == 0
    with np.load(out / "checkpoints" / "enkf.npz") as saved:
        assert int(saved["done"]) == 3


def test_a_full_disk_is_one_line_with_status_1(tmp_path, capsys, monkeypatch):
    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    status = main(["lorenz96", *FAST, "--filters", "enkf", "-o", str(tmp_path)])
    assert status == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "lorenz96_twin.nc: No space left on device" in line and "rerun the same command" in line


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ax.errors.InvalidConfiguration, match="corrector_steps"):
        main(["--debug", "lorenz96", *FAST, "--corrector-steps", "-1", "-o", str(tmp_path)])
    with pytest.raises(ax.errors.InvalidConfiguration, match="corrector_steps"):
        main(["lorenz96", *FAST, "--corrector-steps", "-1", "-o", str(tmp_path), "--debug"])


def _data(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.drop_vars("seconds").load()


def test_a_killed_run_resumes_bit_identically(tmp_path):
    """``kill -9`` of ``assimilax lorenz96`` (200 cycles) after a checkpoint, then the same command: the
    outputs equal an uninterrupted run's bit for bit (timings aside)."""
    args = ["lorenz96", "--particles", "8", "--cycles", "200", "--spinup", "1", "--levels", "3",
            "--filters", "fa-apf", "--checkpoint-every", "1", "--no-progress"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "assimilax.cli", *args, "-o", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    ckpt, done = killed / "checkpoints" / "fa-apf.npz", 0
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with np.load(ckpt) as saved:
                done = int(saved["done"])
        except (OSError, ValueError, KeyError):  # not written yet
            done = 0
        if done >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 2 <= done < 200  # killed mid-run
    assert main([*args, "-o", str(killed)]) == 0  # resumes
    fresh = tmp_path / "fresh"
    assert main([*args, "-o", str(fresh)]) == 0
    a, b = _data(killed / "lorenz96_twin.nc"), _data(fresh / "lorenz96_twin.nc")
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


# ---------------------------------------------------------------------------------------
# Malformed files, drawn by hypothesis: refused with an assimilax.errors exception
# ---------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FILES = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    """A real checkpoint of a 3-cycle run, as bytes."""
    filt, state, ys = _small_run()
    path = tmp_path_factory.mktemp("ckpt") / "run.npz"
    ax.assimilate(filt, state, ys, jax.random.key(1), checkpoint=path, checkpoint_every=1, progress=False)
    return path.read_bytes()


def _small_run():
    d = 2
    observation = ax.ObservationModel(ax.Selection.every(1, d), ax.DiagonalGaussianNoise(1.0, d))
    filt = ax.EnsembleForecast(ax.LinearGaussianEmulator(0.9 * np.eye(d), 0.1 * np.eye(d)), observation, ax.Sampler(n_levels=3))
    return filt, filt.init(np.zeros((4, d), np.float32)), np.zeros((3, d), np.float32)


@FILES
@given(cut=st.floats(0.0, 0.999), noise=st.binary(max_size=64), mode=st.sampled_from(["truncate", "garbage", "flip"]))
def test_a_damaged_checkpoint_is_refused_or_restarted(tmp_path, checkpoint_bytes, cut, noise, mode):
    """Truncated, replaced or bit-flipped checkpoints: a `CheckpointError` naming the file
    (never another exception), or a resume that equals the uninterrupted run when the
    damage missed what is read; with ``restart`` the run starts afresh."""
    data = checkpoint_bytes
    if mode == "truncate":
        data = data[: int(cut * len(data))]
    elif mode == "garbage":
        data = noise
    else:
        i = int(cut * len(data))
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    path = tmp_path / f"damaged-{mode}.npz"
    path.write_bytes(data)
    filt, state, ys = _small_run()
    try:
        _, out = ax.assimilate(filt, state, ys, jax.random.key(1), checkpoint=path, progress=False)
    except ax.errors.CheckpointError as error:
        assert str(path) in str(error)
    else:
        _, ref = ax.assimilate(filt, state, ys, jax.random.key(1), progress=False)
        np.testing.assert_array_equal(np.asarray(out.particles), np.asarray(ref.particles))
    _, out = ax.assimilate(filt, state, ys, jax.random.key(1), checkpoint=path, progress=False, checkpoint_mismatch="restart")
    assert np.all(np.isfinite(np.asarray(out.particles)))


@FILES
@given(cut=st.floats(0.0, 0.99), suffix=st.sampled_from([".npz", ".nc"]), drop=st.sampled_from([None, "xx", "yy", "obs_idx", "q", "r"]))
def test_a_damaged_truth_file_is_refused_naming_it(tmp_path, cut, suffix, drop):
    from assimilax_adapters.lorenz96.truth import load_truth, save_truth

    rng = np.random.default_rng(0)
    path = tmp_path / f"truth{suffix}"
    save_truth(path, rng.normal(size=(5, 8)), rng.normal(size=(4, 4)), np.arange(0, 8, 2), 0.3, 1.0)
    if drop is not None:  # a file without one of its entries
        if suffix == ".npz":
            with np.load(path) as f:
                entries = {k: f[k] for k in f.files if k != drop}
            np.savez(path, **entries)
        else:
            ds = xr.load_dataset(path)
            ds = ds.drop_vars(drop) if drop in ds.variables else ds.drop_attrs() if hasattr(ds, "drop_attrs") else ds
            ds.attrs.pop(drop, None)
            ds.to_netcdf(path)
    else:
        path.write_bytes(path.read_bytes()[: int(cut * path.stat().st_size)])
    with pytest.raises((ax.errors.InvalidData,), match=str(path.name)):
        load_truth(path)


def test_filter_scan_names_the_first_nonfinite_cycle():
    """The same doubling model as in test_assimilate (NaN from |x| >= 5): from 1 the states
    are 2, 4, then NaN at cycle 2 of 4; the scan's output does not come back silently."""
    d = 2
    observation = ax.ObservationModel(ax.Selection.every(1, d), ax.DiagonalGaussianNoise(1.0, d))
    emulator = ax.GaussianTransitionEmulator(lambda x: jnp.where(jnp.abs(x) < 5, 2 * x, jnp.nan), 1e-4 * np.eye(d))
    filt = ax.EnsembleForecast(emulator, observation, ax.Sampler(n_levels=4))
    with pytest.raises(NonFiniteError, match="EnsembleForecast: the analysis of cycle 2 holds NaN or inf in its particles") as caught:
        ax.filter_scan(filt, filt.init(np.full((8, d), 1.5, np.float32)), np.zeros((4, d), np.float32), jax.random.key(0))
    assert caught.value.cycle == 2


def test_a_stale_checkpoint_of_a_later_filter_is_refused_before_any_filter_runs(tmp_path, capsys):
    out = tmp_path / "X"
    assert main(["lorenz96", *FAST, "--filters", "letkf", "--localisation-radius", "3", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["lorenz96", *FAST, "--filters", "enkf", "letkf", "-o", str(out)]) == 2
    assert "letkf.npz belongs to a different run: its filter differ" in _one_error_line(capsys.readouterr().err)
    assert not (out / "checkpoints" / "enkf.npz").exists()  # nothing ran
