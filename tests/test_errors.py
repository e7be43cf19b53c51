"""Every parameter the core refuses, one test per case, with the exception and the name.

Each bad value raises an [`assimilax.errors.InvalidArgument`][] (a parameter) or
[`assimilax.errors.InvalidData`][] (observations, particles) whose message names the
argument, at construction or when a filter's step is traced, before anything runs.
Nothing here compiles a filter: the checks come first.

A few bad values (a float number of Langevin steps) are of a type the annotations refuse,
so the test-time type checker of the conftest would raise its own `TypeError` first; those
are built with `unchecked`, as a user's program (no type checker) builds them.
"""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax import errors
from assimilax.filters.base import check_observations

D, P, N = 4, 2, 4
NAN, INF = float("nan"), float("inf")


@pytest.fixture
def unchecked(monkeypatch):
    """``build(cls, *args)``: `cls` constructed without the test-time type checker."""

    def build(cls, *args, **kwargs):
        monkeypatch.setattr(cls, "__init__", inspect.unwrap(cls.__init__))
        return cls(*args, **kwargs)

    return build


def _emulator():
    return ax.LinearGaussianEmulator(0.9 * np.eye(D), 0.1 * np.eye(D))


def _observation():
    return ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(0.5, P))


def _sampler():
    return ax.Sampler(ax.EDMSchedule(1e-2, 20.0, 7.0), 2)


def _distance():
    return ax.DistanceLocalisation.from_operator(
        ax.Periodic1D(D), np.arange(D), ax.Selection.every(2, D), ax.GaspariCohn(2.0)
    )


def _filters():
    em, obs, smp = _emulator(), _observation(), _sampler()
    blocks = ax.BlockLocalisation.contiguous(D, 2, obs.operator)
    return {
        "BootstrapPF": ax.BootstrapPF(em, obs, smp),
        "FAAPF": ax.FAAPF(em, obs, smp),
        "BlockFAAPF": ax.BlockFAAPF(em, obs, smp, blocks),
        "LocalFAAPF": ax.LocalFAAPF(em, obs, smp, _distance()),
        "StochasticEnKF": ax.StochasticEnKF(em, obs, smp),
        "ETKF": ax.ETKF(em, obs, smp),
        "LETKF": ax.LETKF(em, obs, smp, _distance()),
        "EnsembleForecast": ax.EnsembleForecast(em, obs, smp),
    }


def _particles(n=N):
    return np.random.default_rng(0).normal(size=(n, D)).astype(np.float32)


# --------------------------------------------------------------------------------------
# Tempering
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("iterations", [0, -3])
def test_ess_band_iterations(iterations):
    with pytest.raises(errors.InvalidArgument, match="iterations"):
        ax.ESSBandTempering(iterations=iterations)


def test_ess_band_iterations_not_integer(unchecked):
    with pytest.raises(errors.InvalidArgument, match="iterations"):
        unchecked(ax.ESSBandTempering, iterations=2.5)


@pytest.mark.parametrize("value", [5.0, 0.0, NAN, INF, -INF])
def test_ess_band_log_alpha_min(value):
    # log_alpha_min = 5 allowed alpha = e^5 = 148: tempering that sharpens the weights.
    with pytest.raises(errors.InvalidArgument, match="log_alpha_min"):
        ax.ESSBandTempering(log_alpha_min=value)


@pytest.mark.parametrize("band", [(NAN, 0.5), (0.2, NAN), (0.0, 0.5), (0.6, 0.5), (0.5, 1.2)])
def test_ess_band_fractions(band):
    with pytest.raises(errors.InvalidArgument, match="min_fraction"):
        ax.ESSBandTempering(*band)


def test_ess_band_below_one_particle_refused_when_the_step_is_traced():
    """A band of 0.1-0.2 % of 64 particles lies below one particle (the ESS is at least
    1): refused while the step is traced, naming max_fraction, before anything runs."""
    tempering = ax.ESSBandTempering(0.001, 0.002)
    tempering.check_particles(1000)  # 2 particles: fine
    with pytest.raises(errors.InvalidArgument, match=r"max_fraction = 0\.002.*n = 64 particles"):
        tempering.check_particles(64)
    em, obs, smp = _emulator(), _observation(), _sampler()
    filt = ax.FAAPF(em, obs, smp, tempering=tempering)
    state = filt.init(_particles(64))
    with pytest.raises(errors.InvalidArgument, match="max_fraction"):
        ax.filter_scan(filt, state, np.zeros((2, P)), jax.random.key(0))
    with pytest.raises(errors.InvalidArgument, match="max_fraction"):
        jax.jit(tempering)(jnp.zeros(64), jnp.zeros(64))


# --------------------------------------------------------------------------------------
# Resampling, churn, corrector, schedules, sampler
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [NAN, -0.1, 1.5, INF])
def test_bootstrap_resample_threshold(value):
    with pytest.raises(errors.InvalidArgument, match="resample_threshold"):
        ax.BootstrapPF(_emulator(), _observation(), _sampler(), resample_threshold=value)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(churn=-1.0), "churn"),
        (dict(churn=NAN), "churn"),
        (dict(churn=INF), "churn"),
        (dict(sigma_min=-1.0), "sigma_min"),
        (dict(sigma_min=2.0, sigma_max=1.0), "sigma_max"),
        (dict(noise_inflation=0.0), "noise_inflation"),
        (dict(noise_inflation=NAN), "noise_inflation"),
    ],
)
def test_churn(kwargs, name):
    with pytest.raises(errors.InvalidArgument, match=name):
        ax.Churn(**kwargs)


@pytest.mark.parametrize("steps", [-1, 0])
def test_langevin_steps(steps):
    """LangevinCorrector(-1, ...) used to end in an MLIR error at compile time."""
    with pytest.raises(errors.InvalidArgument, match="steps"):
        ax.LangevinCorrector(steps, 0.1)


def test_langevin_steps_not_integer(unchecked):
    with pytest.raises(errors.InvalidArgument, match="steps"):
        unchecked(ax.LangevinCorrector, 1.5, 0.1)


@pytest.mark.parametrize("delta", [0.0, -0.2, NAN, INF])
def test_langevin_step_size(delta):
    with pytest.raises(errors.InvalidArgument, match="delta"):
        ax.LangevinCorrector(2, delta)


@pytest.mark.parametrize(
    "args, name",
    [
        ((1e-3, INF), "sigma_max"),
        ((1e-3, NAN), "sigma_max"),
        ((1e-3, 1e39), "sigma_max"),  # inf in float32
        ((1e-3, -1.0), "sigma_max"),
        ((1.0, 0.5), "sigma_min"),
        ((1.0, 1.0), "sigma_min"),
        ((0.0, 1.0), "sigma_min"),
        ((-1.0, 1.0), "sigma_min"),
        ((NAN, 1.0), "sigma_min"),
        ((1e-40, 1.0), "sigma_min"),  # a denormal in float32
        ((1e-3, 80.0, 0.0), "rho"),
        ((1e-3, 80.0, NAN), "rho"),
    ],
)
def test_edm_schedule(args, name):
    with pytest.raises(errors.InvalidArgument, match=name):
        ax.EDMSchedule(*args)


def test_schedule_levels():
    with pytest.raises(errors.InvalidArgument, match="n = 0"):
        ax.EDMSchedule().levels(0)
    with pytest.raises(errors.InvalidArgument, match="n = 0"):
        ax.CosineSchedule().levels(0)


@pytest.mark.parametrize("args, name", [((0.5, 0.4), "t_max"), ((NAN, 0.5), "t_min"), ((0.1, 1.0), "t_max")])
def test_cosine_schedule(args, name):
    with pytest.raises(errors.InvalidArgument, match=name):
        ax.CosineSchedule(*args)


@pytest.mark.parametrize("levels", [1, 0, -2])
def test_sampler_levels(levels):
    with pytest.raises(errors.InvalidArgument, match="n_levels"):
        ax.Sampler(ax.EDMSchedule(), levels)


def test_sampler_levels_not_integer(unchecked):
    with pytest.raises(errors.InvalidArgument, match="n_levels"):
        unchecked(ax.Sampler, ax.EDMSchedule(), 3.5)


def test_solver_by_name():
    with pytest.raises(errors.InvalidArgument, match="name = 'rk4'"):
        ax.solver_by_name("rk4")


# --------------------------------------------------------------------------------------
# Weighting, operators, noise
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cov, match",
    [
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "covariance is not positive semi-definite"),  # eigenvalue -1
        (np.array([[1.0, 0.5], [0.0, 1.0]]), "covariance is not symmetric"),
        (np.array([[1.0, NAN], [NAN, 1.0]]), r"covariance\[0, 1\] = nan"),
        (np.array([[INF, 0.0], [0.0, 1.0]]), r"covariance\[0, 0\] = inf"),
    ],
)
def test_gaussian_predictive_weights_covariance(cov, match):
    with pytest.raises(errors.InvalidArgument, match=match):
        ax.GaussianPredictiveWeights(cov)


def test_gaussian_predictive_weights_accepts_singular():
    ax.GaussianPredictiveWeights(np.diag([1.0, 0.0]))  # a noise-free component


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_matrix_operator_non_finite(bad):
    h = np.ones((2, 3))
    h[1, 2] = bad
    with pytest.raises(errors.InvalidArgument, match=r"MatrixOperator: matrix\[1, 2\]"):
        ax.MatrixOperator(h)


def test_function_operator_output_size():
    with pytest.raises(errors.InvalidArgument, match=r"obs_size = 3.*state of size 4 to shape \(2,\)"):
        ax.FunctionOperator(lambda x: x[:2], obs_size=3, state_size=4)
    # Without a state size it is checked where the operator meets the state.
    op = ax.FunctionOperator(lambda x: x[::2] ** 2, obs_size=3)
    model = ax.ObservationModel(op, ax.DiagonalGaussianNoise(1.0, 3))
    with pytest.raises(errors.InvalidArgument, match="obs_size = 3"):
        model.check(np.zeros((2, 3)), D)
    filt = ax.BootstrapPF(_emulator(), model, _sampler())
    with pytest.raises(errors.InvalidArgument, match="obs_size"):
        ax.filter_scan(filt, filt.init(_particles()), np.zeros((2, 3)), jax.random.key(0))
    with pytest.raises(errors.InvalidArgument, match="obs_size"):
        filt.step(filt.init(_particles()), jnp.zeros(3), jax.random.key(0))
    with pytest.raises(errors.InvalidArgument, match="obs_size"):
        ax.FunctionOperator(lambda x: x, obs_size=0)


@pytest.mark.parametrize(
    "std, match",
    [
        (0.0, "std = 0"),
        (-1.0, "std = -1"),
        (NAN, "std = nan"),
        (INF, "std = inf"),
        (1e-30, r"std = 1e-30, std\*\*2: the variance 1e-60 underflows"),  # used to give skill 684928
        (1e-20, "underflows"),
        (1e20, "overflows"),
        (1e39, "overflows"),  # inf after the cast to float32
    ],
)
def test_diagonal_noise_std(std, match):
    with pytest.raises(errors.InvalidArgument, match=match):
        ax.DiagonalGaussianNoise(std, 3)
    with pytest.raises(errors.InvalidArgument, match=r"std\[1\]"):
        ax.DiagonalGaussianNoise(np.array([1.0, std, 1.0]))


def test_diagonal_noise_size():
    with pytest.raises(errors.InvalidArgument, match="size = 0"):
        ax.DiagonalGaussianNoise(1.0, 0)


@pytest.mark.parametrize(
    "cov, match",
    [
        (np.diag([1.0, 0.0]), "not positive definite"),
        (np.diag([1.0, -2.0]), "not positive definite"),
        (np.array([[1.0, NAN], [NAN, 1.0]]), r"covariance\[0, 1\] = nan"),
        (np.diag([1.0, 1e-40]), r"covariance\[1, 1\] = 1e-40: the variance 1e-40 underflows"),
        (np.diag([1.0, 1e39]), r"covariance\[1, 1\] = 1e\+39: the variance 1e\+39 overflows"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), "not symmetric"),
    ],
)
def test_dense_noise_covariance(cov, match):
    with pytest.raises(errors.InvalidArgument, match=match):
        ax.DenseGaussianNoise(cov)


def test_noise_built_inside_jit_is_not_checked_there():
    """Construction inside `jit` (traced values) skips the value checks and still works."""
    out = jax.jit(lambda s: ax.DiagonalGaussianNoise(s).std * 2)(jnp.ones(3))
    np.testing.assert_array_equal(np.asarray(out), 2.0)
    jax.jit(lambda c: ax.DenseGaussianNoise(c).cov)(jnp.eye(2))
    jax.jit(lambda h: ax.MatrixOperator(h).matrix)(jnp.ones((2, 3)))
    jax.jit(lambda q: ax.GaussianPredictiveWeights(q).covariance)(jnp.eye(2))


# --------------------------------------------------------------------------------------
# Observations: values beyond float32, inf, wrong lengths in a step
# --------------------------------------------------------------------------------------


def test_float64_observations_beyond_float32():
    """1e39 is finite in float64 but inf in float32, where it would be read as missing."""
    y = np.zeros((4, P))
    y[2, 1] = 1e39
    with pytest.raises(errors.InvalidData, match=r"1e\+39 at time 2, observation 1 .*float32"):
        check_observations(_observation(), y, D, jnp.float32)
    filt = _filters()["BootstrapPF"]
    with pytest.raises(errors.InvalidData, match="at time 2, observation 1"):
        ax.filter_scan(filt, filt.init(_particles()), y, jax.random.key(0))
    check_observations(_observation(), y, D, jnp.float64)  # fine in float64


def test_observations_with_inf_name_the_index():
    y = np.zeros((4, P))
    y[3, 0] = -INF
    with pytest.raises(errors.InvalidData, match=r"inf at time 3, observation 0 .*NaN for missing"):
        check_observations(_observation(), y, D)


def test_missing_observations_are_accepted():
    check_observations(_observation(), np.full((3, P), np.nan), D)


@pytest.mark.parametrize("name", list(_filters()))
@pytest.mark.parametrize("length", [P - 1, P + 1])
def test_step_with_wrong_length_y(name, length):
    """A wrong-length y used to broadcast silently in every filter's step."""
    filt = _filters()[name]
    state = filt.init(_particles())
    with pytest.raises(errors.InvalidData, match=rf"{name}.step: y has shape \({length},\): must be \({P},\)"):
        filt.step(state, jnp.zeros(length), jax.random.key(0))
    with pytest.raises(errors.InvalidData, match="y has shape"):
        eqx.filter_jit(filt.step)(state, jnp.zeros(length), jax.random.key(0))


# --------------------------------------------------------------------------------------
# Ensemble Kalman filters: ensemble size, inflation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["StochasticEnKF", "ETKF", "LETKF"])
def test_kalman_filters_need_two_members(name):
    filt = _filters()[name]
    state = filt.init(_particles(1))
    with pytest.raises(errors.InvalidArgument, match=rf"{name}: n_particles = 1: must be at least 2"):
        filt.step(state, jnp.zeros(P), jax.random.key(0))
    with pytest.raises(errors.InvalidArgument, match="n_particles"):
        ax.filter_scan(filt, state, np.zeros((2, P)), jax.random.key(0))


@pytest.mark.parametrize("inflation", [NAN, INF, 0.0, -1.0])
@pytest.mark.parametrize("name", ["StochasticEnKF", "ETKF", "LETKF", "LocalFAAPF"])
def test_inflation(name, inflation):
    em, obs, smp = _emulator(), _observation(), _sampler()
    cls = getattr(ax, name)
    extra = (_distance(),) if name in ("LETKF", "LocalFAAPF") else ()
    with pytest.raises(errors.InvalidArgument, match=rf"{name}: inflation = {inflation}"):
        cls(em, obs, smp, *extra, inflation=inflation)


# --------------------------------------------------------------------------------------
# The other constructors of the core
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: ax.DPS(scale=-1.0), "scale"),
        (lambda: ax.DPS(scale=NAN), "scale"),
        (lambda: ax.PseudoInverse(gamma=INF), "gamma"),
        (lambda: ax.MMPS(iterations=0), "iterations"),
        (lambda: ax.GuidanceBelowLevel(ax.MMPS(), NAN), "max_sigma"),
        (lambda: ax.GuidanceBelowLevel(ax.MMPS(), 0.0), "max_sigma"),
        (lambda: ax.SwitchedDenoiser(lambda x, s: x, lambda x, s: x, NAN), "level"),
        (lambda: ax.EDMPreconditioned(lambda x, c, ctx: x, sigma_data=0.0), "sigma_data"),
        (lambda: ax.Periodic1D(INF), "length"),
        (lambda: ax.Periodic1D(0.0), "length"),
        (lambda: ax.Periodic2D((1.0, NAN)), "lengths"),
        (lambda: ax.LatLon(-1.0), "radius"),
        (lambda: ax.GaspariCohn(INF), "half_width"),
        (lambda: ax.GaspariCohn.from_length_scale(NAN), "length_scale"),
        (lambda: ax.Selection.every(2, D, offset=D), "offset"),
        (lambda: ax.Selection.every(0, D), "n = 0"),
        (lambda: ax.BlockLocalisation.contiguous(D, D + 1, ax.Selection.every(2, D)), "block_size"),
        (lambda: ax.BlockLocalisation([0, 1], [0], n_blocks=0), "n_blocks"),
        (lambda: ax.Interpolation([np.arange(4.0)], np.array([[NAN]]), 4), r"points\[0, 0\]"),
        (lambda: ax.Interpolation([np.arange(4.0)], np.array([[1.0]]), 4, periodic=[0.0]), "periodic"),
        (lambda: ax.LinearGaussianEmulator(np.array([[NAN]]), np.eye(1)), "transition_matrix"),
        (lambda: ax.LocalFAAPF(_emulator(), _observation(), _sampler(), _distance(), predictive_variance=-1.0), "predictive_variance"),
        (lambda: ax.LETKF(_emulator(), _observation(), _sampler(), _distance(), batch_size=0), "batch_size"),
        (lambda: ax.LETKF(_emulator(), _observation(), _sampler(), _distance(), max_local_obs=P + 1), "max_local_obs"),
    ],
)
def test_other_constructors(build, name):
    with pytest.raises(errors.InvalidArgument, match=name):
        build()


def test_errors_are_value_errors():
    """Existing ``except ValueError`` code keeps working."""
    assert issubclass(errors.InvalidArgument, ValueError) and issubclass(errors.InvalidData, ValueError)
    with pytest.raises(ValueError):
        ax.LangevinCorrector(-1, 0.1)
