"""Bad input raises early, with a message naming the problem.

Checks at the Python boundary (before any tracing) raise `ValueError`; checks that can
only live in compiled code (degenerate weights) raise `equinox.EquinoxRuntimeError` from
inside the jitted scan.  Every test asserts the exception type *and* a message fragment
naming the offending quantity.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax

D, P_OBS, N = 6, 3, 8


def _emulator():
    rng = np.random.default_rng(0)
    F = 0.9 * np.linalg.qr(rng.normal(size=(D, D)))[0]
    return ax.LinearGaussianEmulator(F, 0.1 * np.eye(D))


def _observation(std=0.5):
    return ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(std, P_OBS))


def _sampler():
    return ax.Sampler(ax.EDMSchedule(1e-2, 20.0, 7.0), 3)


def _filters():
    em, obs, smp = _emulator(), _observation(), _sampler()
    return {
        "BootstrapPF": ax.BootstrapPF(em, obs, smp),
        "FAAPF": ax.FAAPF(em, obs, smp),
        "EnsembleForecast": ax.EnsembleForecast(em, obs, smp),
    }


FILTER_NAMES = ["BootstrapPF", "FAAPF", "EnsembleForecast"]


# --------------------------------------------------------------------------------------
# The initial ensemble
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILTER_NAMES)
@pytest.mark.parametrize("shape", [(N, D + 1), (N, 2, D)])
def test_init_wrong_particle_shape(name, shape):
    filt = _filters()[name]
    with pytest.raises(ValueError, match=rf"initial particles have shape .*expected \(n_particles, 1, {D}\)"):
        filt.init(np.zeros(shape, np.float32))


# A wrong *rank* is rejected by the shape annotation under the test-time type checker
# (jaxtyping's TypeCheckError, a TypeError naming the parameter) and by the filter's own
# check otherwise (ValueError); both name the particles / observations.
RANK_ERRORS = (TypeError, ValueError)


@pytest.mark.parametrize("shape", [(N,), (N, 1, D, 1)])
def test_init_wrong_particle_rank(shape):
    with pytest.raises(RANK_ERRORS, match="particles"):
        _filters()["FAAPF"].init(np.zeros(shape, np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_init_non_finite_ensemble(bad):
    particles = np.zeros((N, D), np.float32)
    particles[5, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf .*particle 5.*component 2"):
        _filters()["FAAPF"].init(particles)


def test_init_accepts_both_layouts():
    filt = _filters()["BootstrapPF"]
    x = np.random.default_rng(1).normal(size=(N, D)).astype(np.float32)
    a, b = filt.init(x), filt.init(x[:, None, :])
    np.testing.assert_array_equal(np.asarray(a.particles), np.asarray(b.particles))
    assert a.particles.shape == (N, 1, D) and a.log_weights.shape == (N,)


# --------------------------------------------------------------------------------------
# Observations passed to filter_scan
# --------------------------------------------------------------------------------------


def _state(filt):
    return filt.init(np.zeros((N, D), np.float32))


@pytest.mark.parametrize("name", ["BootstrapPF", "FAAPF"])
def test_observations_wrong_width(name):
    filt = _filters()[name]
    with pytest.raises(ValueError, match=rf"shape \(4, {P_OBS + 1}\).*returns {P_OBS} values"):
        ax.filter_scan(filt, _state(filt), np.zeros((4, P_OBS + 1)), jax.random.key(0))


@pytest.mark.parametrize("name", FILTER_NAMES)
@pytest.mark.parametrize("shape", [(P_OBS,), (2, 4, P_OBS)])
def test_observations_wrong_rank(name, shape):
    filt = _filters()[name]
    with pytest.raises(RANK_ERRORS, match="observations"):
        ax.filter_scan(filt, _state(filt), np.zeros(shape), jax.random.key(0))


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_observations_with_inf(bad):
    filt = _filters()["FAAPF"]
    y = np.zeros((4, P_OBS))
    y[2, 1] = bad
    with pytest.raises(ValueError, match="inf .*NaN for missing"):
        ax.filter_scan(filt, _state(filt), y, jax.random.key(0))


def test_observation_operator_state_size_disagrees_with_emulator():
    em = _emulator()
    obs = ax.ObservationModel(ax.Selection.every(2, D + 2), ax.DiagonalGaussianNoise(1.0, (D + 2) // 2))
    filt = ax.BootstrapPF(em, obs, _sampler())
    with pytest.raises(ValueError, match=rf"states of size {D + 2}, but the state has size {D}"):
        ax.filter_scan(filt, _state(filt), np.zeros((2, obs.obs_size)), jax.random.key(0))


# --------------------------------------------------------------------------------------
# Observation model construction
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("std", [-1.0, 0.0])
def test_non_positive_observation_noise(std):
    with pytest.raises(ValueError, match="observation noise std must be strictly positive"):
        _observation(std)
    with pytest.raises(ValueError, match="observation noise std must be strictly positive"):
        ax.DiagonalGaussianNoise(np.array([0.5, std, 0.5]))


def test_nan_observation_noise():
    with pytest.raises(ValueError, match="observation noise std contains NaN"):
        ax.DiagonalGaussianNoise(np.array([0.5, np.nan, 0.5]))


def test_operator_and_noise_sizes_disagree():
    with pytest.raises(ValueError, match=rf"Selection returns {P_OBS} values but the noise has size {P_OBS + 1}"):
        ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(1.0, P_OBS + 1))
    with pytest.raises(ValueError, match="MatrixOperator returns 2 values but the noise has size 3"):
        ax.ObservationModel(ax.MatrixOperator(np.ones((2, D))), ax.DenseGaussianNoise(np.eye(3)))


# --------------------------------------------------------------------------------------
# Denoisers and exact emulators
# --------------------------------------------------------------------------------------


def test_gaussian_denoiser_rejects_non_symmetric():
    cov = np.eye(3)
    cov[0, 2] = 0.5
    with pytest.raises(ValueError, match="not symmetric"):
        ax.GaussianDenoiser(cov)


def test_gaussian_denoiser_rejects_non_psd():
    cov = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # eigenvalue -1
    with pytest.raises(ValueError, match="not positive semi-definite .*smallest eigenvalue -1"):
        ax.GaussianDenoiser(cov)


def test_gaussian_denoiser_rejects_non_finite_and_non_square():
    with pytest.raises(ValueError, match="NaN or inf"):
        ax.GaussianDenoiser(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises((TypeError, ValueError), match="square|covariance"):
        ax.GaussianDenoiser(np.ones((2, 3)))  # TypeError from the test-time shape checker


def test_linear_gaussian_emulator_mismatched_f_q():
    with pytest.raises((TypeError, ValueError), match=r"\(3, 3\).*\(4, 4\)|Q has shape|d="):
        ax.LinearGaussianEmulator(np.eye(4), np.eye(3))


def test_linear_gaussian_emulator_rejects_bad_q():
    with pytest.raises(ValueError, match="not symmetric|positive semi-definite"):
        ax.LinearGaussianEmulator(np.eye(2), np.array([[1.0, 0.0], [3.0, 1.0]]))


# --------------------------------------------------------------------------------------
# Degenerate weights, caught inside the compiled scan
# --------------------------------------------------------------------------------------


def test_impossible_observation_raises_inside_jit():
    """An observation so far from every particle that every float32 log-likelihood is
    -inf: the filter stops with a message rather than resampling garbage."""
    filt = _filters()["BootstrapPF"]
    y = np.full((2, P_OBS), 1e25, np.float32)
    with pytest.raises(eqx.EquinoxRuntimeError, match="every log-weight is -inf"):
        ax.filter_scan(filt, _state(filt), y, jax.random.key(0))


def test_nan_particles_raise_inside_jit():
    """An emulator that produces NaN (a diverging model) is reported, not propagated."""
    em = ax.GaussianTransitionEmulator(lambda x: x + jnp.log(x - 1e6), 0.1 * np.eye(D))
    filt = ax.BootstrapPF(em, _observation(), _sampler())
    with pytest.raises(eqx.EquinoxRuntimeError, match="log-weights contain NaN"):
        ax.filter_scan(filt, _state(filt), np.zeros((2, P_OBS)), jax.random.key(0))


def test_impossible_observation_stops_assimilate_naming_the_cycle():
    """The same degenerate weights under `assimilate`: the compiled step returns NaN (no host
    callback, so the persistent cache can keep it) and the host loop stops at that cycle."""
    filt = _filters()["BootstrapPF"]
    y = np.zeros((3, P_OBS), np.float32)
    y[1] = 1e25
    with pytest.raises(FloatingPointError, match="BootstrapPF: the analysis of cycle 1 .*impossible"):
        ax.assimilate(filt, _state(filt), y, jax.random.key(0), progress=False)
