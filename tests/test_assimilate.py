"""The cycle-by-cycle driver: agrees with filter_scan, checkpoints, resumes exactly."""

import jax
import numpy as np
import pytest

import assimilax as ax
from assimilax.assimilate import _fingerprint, _save


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
    _save(path, _fingerprint(state, ys, key), partial_state, 3, history)
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
