"""The cycle-by-cycle driver: agrees with filter_scan, checkpoints, resumes exactly."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax.assimilate import FilterMoments, _fingerprint, _save


def _setup():
    d = 4
    emulator = ax.LinearGaussianEmulator(0.9 * np.eye(d), 0.1 * np.eye(d))
    observation = ax.ObservationModel(ax.Selection.every(2, d), ax.DiagonalGaussianNoise(0.5, 2))
    filt = ax.FAAPF(emulator, observation, ax.Sampler(n_levels=8))
    state = filt.init(jax.random.normal(jax.random.key(0), (32, d)))
    ys = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
    return filt, state, ys


def test_assimilate_matches_filter_scan():
    filt, state, ys = _setup()
    _, scanned = ax.filter_scan(filt, state, ys, jax.random.key(1))
    _, looped = ax.assimilate(filt, state, ys, jax.random.key(1), progress=False)
    # Same per-cycle keys; only the compilation (one scan vs one step) differs.
    np.testing.assert_allclose(np.asarray(scanned.particles), looped.particles, atol=1e-5)
    np.testing.assert_allclose(np.asarray(scanned.diagnostics.ess), looped.diagnostics.ess, rtol=1e-4)


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    filt, state, ys = _setup()
    key = jax.random.key(1)
    _, full = ax.assimilate(filt, state, ys, key, progress=False)
    # An interrupted run: the first 3 cycles done and checkpointed.
    partial_state, partial = ax.assimilate(filt, state, ys[:3], key, progress=False)
    history = {
        "particles": list(partial.particles),
        "log_weights": list(partial.log_weights),
        "ess": list(partial.diagnostics.ess),
        "alpha": list(partial.diagnostics.alpha),
        "log_likelihood": list(partial.diagnostics.log_likelihood),
    }
    path = tmp_path / "run.npz"
    _save(path, _fingerprint(filt, state, ys, key), partial_state, 3, history)
    _, resumed = ax.assimilate(filt, state, ys, key, checkpoint=path, progress=False)
    np.testing.assert_array_equal(resumed.particles, full.particles)
    np.testing.assert_array_equal(resumed.diagnostics.alpha, full.diagnostics.alpha)
    assert path.exists()


def test_checkpoint_of_another_run_is_refused(tmp_path):
    filt, state, ys = _setup()
    path = tmp_path / "run.npz"
    ax.assimilate(filt, state, ys[:2], jax.random.key(1), checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="different run"):
        ax.assimilate(filt, state, ys, jax.random.key(1), checkpoint=path, progress=False)


def _moments_of(output):
    """Weighted mean and variance of each cycle's ensemble, by the metrics module."""
    w = np.exp(np.asarray(output.log_weights))
    mean = [ax.metrics.ensemble_mean(p, wt) for p, wt in zip(output.particles, w)]
    var = [ax.metrics.ensemble_variance(p, wt) for p, wt in zip(output.particles, w)]
    return np.stack(mean), np.stack(var)


def test_moments_equal_the_moments_of_the_ensemble_run():
    filt, state, ys = _setup()
    key = jax.random.key(1)
    _, ens = ax.assimilate(filt, state, ys, key, progress=False)
    _, mom = ax.assimilate(filt, state, ys, key, progress=False, keep="moments")
    assert isinstance(mom, FilterMoments) and mom.mean.shape == mom.variance.shape == (6, 4)
    assert isinstance(mom.mean, np.ndarray)  # stays on the host
    mean, var = _moments_of(ens)
    # Same keys and the same float32 formulas; only where they are compiled differs
    # (inside the step vs eagerly here), so the agreement is float32 rounding.
    np.testing.assert_allclose(mom.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mom.variance, var, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mom.diagnostics.alpha, ens.diagnostics.alpha)
    # scores() from the moments: the ensemble's skill and spread, without CRPS.
    truth = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    observed = np.arange(4) % 2 == 0
    for components in (None, observed):
        a = ax.scores(ens, truth, components)
        b = ax.scores(mom, truth, components)
        assert set(b) == {"skill", "spread", "spread_skill"}
        for name in b:
            np.testing.assert_allclose(b[name], a[name], rtol=1e-5)


def test_to_dataset_of_moments():
    filt, state, ys = _setup()
    _, mom = ax.assimilate(filt, state, ys, jax.random.key(1), progress=False, keep="moments")
    ds = ax.to_dataset(mom, times=np.arange(10, 16))
    assert ds["x_mean"].dims == ds["x_variance"].dims == ("time", "variable")
    np.testing.assert_array_equal(ds["x_mean"].values, mom.mean)
    np.testing.assert_array_equal(ds["time"].values, np.arange(10, 16))
    assert "particle" not in ds.dims and "log_weights" not in ds and ds.sizes["time"] == 6


def test_resume_with_moments_reproduces_the_uninterrupted_run(tmp_path):
    filt, state, ys = _setup()
    key = jax.random.key(1)
    _, full = ax.assimilate(filt, state, ys, key, progress=False, keep="moments")
    partial_state, partial = ax.assimilate(filt, state, ys[:3], key, progress=False, keep="moments")
    history = {
        "mean": list(partial.mean),
        "variance": list(partial.variance),
        "ess": list(partial.diagnostics.ess),
        "alpha": list(partial.diagnostics.alpha),
        "log_likelihood": list(partial.diagnostics.log_likelihood),
    }
    path = tmp_path / "run.npz"
    _save(path, _fingerprint(filt, state, ys, key), partial_state, 3, history, "moments")
    _, resumed = ax.assimilate(filt, state, ys, key, checkpoint=path, progress=False, keep="moments")
    np.testing.assert_array_equal(resumed.mean, full.mean)
    np.testing.assert_array_equal(resumed.variance, full.variance)
    np.testing.assert_array_equal(resumed.diagnostics.ess, full.diagnostics.ess)
    with np.load(path) as saved:  # the full current state, the moments' history only
        assert saved["state_particles"].shape == (32, 1, 4)
        assert saved["mean"].shape == (6, 4) and "particles" not in saved


def test_checkpoint_with_other_keep_is_refused(tmp_path):
    filt, state, ys = _setup()
    path = tmp_path / "run.npz"
    ax.assimilate(filt, state, ys[:2], jax.random.key(1), checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="keep='ensemble'"):
        ax.assimilate(filt, state, ys[:2], jax.random.key(1), checkpoint=path, progress=False, keep="moments")


def test_bad_keep_raises():
    filt, state, ys = _setup()
    # The function's own check (what a caller sees without the test-time type checker) ...
    with pytest.raises(ValueError, match="keep = 'particles': must be 'ensemble' or 'moments'"):
        inspect.unwrap(ax.assimilate)(filt, state, ys, jax.random.key(1), progress=False, keep="particles")
    # ... and under it, the Literal annotation rejects it first (a TypeError naming `keep`).
    with pytest.raises((TypeError, ValueError), match="keep"):
        ax.assimilate(filt, state, ys, jax.random.key(1), progress=False, keep="particles")


def test_checkpoint_of_another_filter_is_refused_naming_it(tmp_path):
    """Same observations, ensemble and key, but another sampler: the old output is not reused."""
    filt, state, ys = _setup()
    path = tmp_path / "run.npz"
    ax.assimilate(filt, state, ys, jax.random.key(1), checkpoint=path, progress=False)
    other = ax.FAAPF(filt.emulator, filt.observation, ax.Sampler(n_levels=4))
    with pytest.raises(ValueError, match=r"different run: its filter differ.*restart"):
        ax.assimilate(other, state, ys, jax.random.key(1), checkpoint=path, progress=False)
    moved = filt.init(np.asarray(state.particles)[:, 0] + 1.0)  # same shape, other values
    with pytest.raises(ValueError, match="its initial ensemble differ"):
        ax.assimilate(filt, moved, ys, jax.random.key(1), checkpoint=path, progress=False)
    # Starting afresh recomputes and overwrites; resuming anyway keeps the old cycles.
    _, fresh = ax.assimilate(other, state, ys, jax.random.key(1), checkpoint=path, progress=False,
                             checkpoint_mismatch="restart")
    _, direct = ax.assimilate(other, state, ys, jax.random.key(1), progress=False)
    np.testing.assert_array_equal(fresh.particles, direct.particles)


def test_nan_in_the_last_cycle_raises_and_is_not_checkpointed(tmp_path):
    """A model that doubles the state and emits NaN from 5 up: from 1, the states are about
    2, 4, 8 and then NaN at the last of 4 cycles.  The run stops naming that cycle, and the
    checkpoint holds the 3 finite cycles before it."""
    d = 2
    observation = ax.ObservationModel(ax.Selection.every(1, d), ax.DiagonalGaussianNoise(1.0, d))
    emulator = ax.GaussianTransitionEmulator(lambda x: jnp.where(jnp.abs(x) < 5, 2 * x, jnp.nan), 1e-4 * np.eye(d))
    filt = ax.EnsembleForecast(emulator, observation, ax.Sampler(n_levels=4))
    state = filt.init(np.ones((8, d), np.float32))
    path = tmp_path / "run.npz"
    with pytest.raises(FloatingPointError, match="EnsembleForecast: the analysis of cycle 3 .* holds the 3 cycles before it"):
        ax.assimilate(filt, state, np.zeros((4, d), np.float32), jax.random.key(0), checkpoint=path,
                      checkpoint_every=1, progress=False)
    with np.load(path) as saved:
        assert int(saved["done"]) == 3 and np.all(np.isfinite(saved["state_particles"]))


def test_checkpoint_problems_are_found_before_any_cycle(tmp_path):
    filt, state, ys = _setup()
    with pytest.raises(ValueError, match="does not exist"):
        ax.assimilate(filt, state, ys, jax.random.key(1), checkpoint=tmp_path / "no" / "run.npz", progress=False)
    with pytest.raises(ValueError, match="checkpoint_every = 0: must be a positive integer"):
        ax.assimilate(filt, state, ys, jax.random.key(1), checkpoint=tmp_path / "r.npz", checkpoint_every=0,
                      progress=False)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="cannot be read.*truncated, damaged, empty or not an assimilax checkpoint"):
        ax.assimilate(filt, state, ys, jax.random.key(1), checkpoint=truncated, progress=False)
    stale = tmp_path / "r.npz.tmp"
    stale.write_bytes(b"left by a killed run")
    ax.assimilate(filt, state, ys[:1], jax.random.key(1), checkpoint=tmp_path / "r.npz", progress=False)
    assert not stale.exists() and (tmp_path / "r.npz").exists()


def test_forcings_shorter_than_the_observations_are_refused():
    filt, state, ys = _setup()
    with pytest.raises(ValueError, match="forcings cover 2 cycles, the observations 6"):
        ax.assimilate(filt, state, ys, jax.random.key(1), np.zeros((2, 3)), progress=False)


def test_the_step_compiles_once_across_calls():
    """A second run of the same filter structure (another key, other observations) reuses
    the compiled step: equinox's cache of the module-level step has one entry for it."""
    from assimilax.assimilate import _step

    filt, state, ys = _setup()
    ax.assimilate(filt, state, ys[:2], jax.random.key(1), progress=False)
    before = _step._cached._cache_size()
    ax.assimilate(filt, state, ys[2:], jax.random.key(2), progress=False)
    other_values = ax.FAAPF(ax.LinearGaussianEmulator(0.8 * np.eye(4), 0.2 * np.eye(4)), filt.observation, filt.sampler)
    ax.assimilate(other_values, state, ys[:2], jax.random.key(3), progress=False)
    assert _step._cached._cache_size() == before
