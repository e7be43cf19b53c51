"""Property-based tests of the core's validation (hypothesis).

Malformed configurations (numbers out of range, NaN, inf, wrong sizes), operators, noise
models and observation sequences are drawn at random; each must be refused with an
`assimilax.errors` exception whose message names the bad argument, or handled as
documented (NaN observations are missing values).  Valid random small inputs must give a
finite analysis.

Cheap by design: validation happens before compilation, so the refusals compile nothing;
the one property that runs filters keeps every random quantity in arrays (traced, not
static), so each filter compiles once.  Reproducible: derandomized, no example database.
"""

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assimilax as ax
from assimilax import errors
from assimilax.filters.base import check_observations

FAST = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RUNS = settings(FAST, max_examples=20)

D, P, N = 4, 2, 4
F32_MAX, F32_TINY = float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny)

non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
non_positive = st.floats(max_value=0.0, allow_nan=False) | non_finite.filter(lambda v: not v > 0)
negative = st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False) | non_finite
not_positive_finite = non_positive | st.just(math.inf)


def _emulator():
    return ax.LinearGaussianEmulator(0.9 * np.eye(D), 0.1 * np.eye(D))


def _observation(std=0.5):
    return ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(std, P))


SAMPLER = ax.Sampler(ax.EDMSchedule(1e-2, 20.0, 7.0), 2, diffrax.Euler())  # small graphs: quick to compile


def _distance():
    return ax.DistanceLocalisation.from_operator(
        ax.Periodic1D(D), np.arange(D), ax.Selection.every(2, D), ax.GaspariCohn(2.0)
    )


EM, OBS, DIST = _emulator(), _observation(), _distance()  # built once: the refusals are cheap


def _refused(build, name, kind=errors.AssimilaxError):
    """`build()` raises `kind` and its message names `name`."""
    with pytest.raises(kind) as info:
        build()
    assert name in str(info.value), (name, str(info.value))


# --------------------------------------------------------------------------------------
# Scalar parameters out of range
# --------------------------------------------------------------------------------------

# (argument name, builder of the object from one value, strategy of bad values)
SCALARS = [
    ("log_alpha_min", lambda v: ax.ESSBandTempering(log_alpha_min=v), st.floats(min_value=0.0) | non_finite),
    ("min_fraction", lambda v: ax.ESSBandTempering(min_fraction=v), non_positive | st.floats(min_value=1.0001)),
    ("max_fraction", lambda v: ax.ESSBandTempering(0.1, v), st.floats(max_value=0.0999) | st.floats(min_value=1.0001) | non_finite),
    ("iterations", lambda v: ax.ESSBandTempering(iterations=v), st.integers(max_value=0)),
    ("resample_threshold", lambda v: ax.BootstrapPF(EM, OBS, SAMPLER, resample_threshold=v),
     st.floats(max_value=-1e-9) | st.floats(min_value=1.000001) | non_finite),
    ("churn", lambda v: ax.Churn(churn=v), negative | st.just(math.inf)),
    ("noise_inflation", lambda v: ax.Churn(noise_inflation=v), not_positive_finite),
    ("steps", lambda v: ax.LangevinCorrector(v, 0.1), st.integers(max_value=0)),
    ("delta", lambda v: ax.LangevinCorrector(2, v), not_positive_finite),
    ("sigma_max", lambda v: ax.EDMSchedule(1e-3, v), non_positive | st.floats(min_value=3.5e38) | st.just(math.inf)),
    ("rho", lambda v: ax.EDMSchedule(1e-3, 80.0, v), not_positive_finite),
    ("n_levels", lambda v: ax.Sampler(ax.EDMSchedule(), v), st.integers(max_value=1)),
    ("inflation", lambda v: ax.StochasticEnKF(EM, OBS, SAMPLER, inflation=v), not_positive_finite),
    ("inflation", lambda v: ax.ETKF(EM, OBS, SAMPLER, inflation=v), not_positive_finite),
    ("inflation", lambda v: ax.LETKF(EM, OBS, SAMPLER, DIST, inflation=v), not_positive_finite),
    ("scale", lambda v: ax.DPS(scale=v), negative | st.just(math.inf)),
    ("gamma", lambda v: ax.PseudoInverse(gamma=v), negative | st.just(math.inf)),
    ("half_width", lambda v: ax.GaspariCohn(v), not_positive_finite),
    ("length", lambda v: ax.Periodic1D(v), not_positive_finite),
]


@FAST
@given(st.data())
def test_scalar_out_of_range_is_refused_naming_it(data):
    name, build, bad = data.draw(st.sampled_from(SCALARS))
    value = data.draw(bad)
    _refused(lambda: build(value), name, errors.InvalidArgument)


@FAST
@given(st.floats(1e-3, 1e3), st.floats(0.0, 10.0))
def test_edm_sigma_min_not_below_sigma_max(sigma_max, excess):
    _refused(lambda: ax.EDMSchedule(sigma_max * (1 + excess), sigma_max), "sigma_min", errors.InvalidArgument)


@FAST
@given(st.integers(1, 512), st.floats(1e-4, 1.0))
def test_ess_band_needs_one_particle(n, max_fraction):
    """The band ``[min, max] n`` must reach one particle: refused iff ``max n < 1``."""
    tempering = ax.ESSBandTempering(max_fraction / 2, max_fraction)
    if max_fraction * n < 1:
        _refused(lambda: tempering.check_particles(n), "max_fraction", errors.InvalidArgument)
    else:
        tempering.check_particles(n)


# --------------------------------------------------------------------------------------
# Operators and noise models
# --------------------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 4), st.integers(1, 4))


@FAST
@given(shapes, st.data(), non_finite)
def test_matrix_operator_with_non_finite_entry(shape, data, bad):
    i, j = data.draw(st.integers(0, shape[0] - 1)), data.draw(st.integers(0, shape[1] - 1))
    h = np.ones(shape)
    h[i, j] = bad
    _refused(lambda: ax.MatrixOperator(h), f"matrix[{i}, {j}]", errors.InvalidArgument)


@FAST
@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.booleans())
def test_function_operator_output_size(d, out, declared, at_construction):
    fn = lambda x: jnp.resize(x, (out,))  # noqa: E731
    if out == declared:
        op = ax.FunctionOperator(fn, declared, d if at_construction else None)
        op.check_state_size(d)
        return
    if at_construction:
        _refused(lambda: ax.FunctionOperator(fn, declared, d), "obs_size", errors.InvalidArgument)
    else:
        model = ax.ObservationModel(ax.FunctionOperator(fn, declared), ax.DiagonalGaussianNoise(1.0, declared))
        _refused(lambda: model.check(np.zeros((2, declared)), d), "obs_size", errors.InvalidArgument)


bad_std = (
    non_positive
    | st.floats(min_value=1e-300, max_value=1e-19)  # variance underflows in float32
    | st.floats(min_value=1.9e19, allow_infinity=False)  # variance overflows
)
good_std = st.floats(1e-3, 1e3)


@FAST
@given(st.lists(good_std, min_size=1, max_size=5), st.data())
def test_diagonal_noise_with_one_bad_std(stds, data):
    ax.DiagonalGaussianNoise(np.array(stds))  # valid
    i = data.draw(st.integers(0, len(stds) - 1))
    stds[i] = data.draw(bad_std)
    _refused(lambda: ax.DiagonalGaussianNoise(np.array(stds)), f"std[{i}]", errors.InvalidArgument)


@FAST
@given(st.integers(1, 4), st.data())
def test_dense_noise_not_positive_definite_or_out_of_float32(p, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    q = np.linalg.qr(rng.normal(size=(p, p)))[0]
    eig = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=p, max_size=p)))
    ax.DenseGaussianNoise(q @ np.diag(eig) @ q.T)  # valid
    ax.GaussianPredictiveWeights(q @ np.diag(eig) @ q.T)
    k = data.draw(st.integers(0, p - 1))
    kind = data.draw(st.sampled_from(["indefinite", "nan", "tiny"]))
    if kind == "indefinite":
        eig[k] = -data.draw(st.floats(1e-3, 10.0))
        cov = q @ np.diag(eig) @ q.T
    elif kind == "nan":
        cov = q @ np.diag(eig) @ q.T
        cov[k, k] = data.draw(non_finite)
    else:
        cov = np.diag(eig)
        cov[k, k] = data.draw(st.floats(1e-300, 1e-39))
    _refused(lambda: ax.DenseGaussianNoise(cov), "covariance", errors.InvalidArgument)
    if kind != "tiny":  # a transition covariance may be tiny (or zero)
        _refused(lambda: ax.GaussianPredictiveWeights(cov), "covariance", errors.InvalidArgument)


# --------------------------------------------------------------------------------------
# Observation sequences
# --------------------------------------------------------------------------------------


@FAST
@given(st.integers(1, 5), st.data())
def test_observation_values(times, data):
    """inf anywhere, or a float64 value beyond float32, is refused naming its time and
    index; NaN (missing) is accepted."""
    y = np.array(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=times * P, max_size=times * P))).reshape(times, P)
    missing = np.array(data.draw(st.lists(st.booleans(), min_size=times * P, max_size=times * P))).reshape(times, P)
    y[missing] = np.nan
    check_observations(OBS, y, D, jnp.float32)  # NaN = missing: fine
    t, j = data.draw(st.integers(0, times - 1)), data.draw(st.integers(0, P - 1))
    y[t, j] = data.draw(st.sampled_from([math.inf, -math.inf]) | st.floats(3.5e38, 1e300) | st.floats(-1e300, -3.5e38))
    _refused(lambda: check_observations(OBS, y, D, jnp.float32), f"at time {t}, observation {j}", errors.InvalidData)


@FAST
@given(st.lists(st.integers(0, 4), min_size=0, max_size=3))
def test_observation_shapes(shape):
    shape = tuple(shape)
    if shape[-1:] == (P,) and len(shape) == 2:
        check_observations(OBS, np.zeros(shape), D)
        return
    with pytest.raises((errors.InvalidData, TypeError)) as info:  # TypeError: the test-time rank check
        check_observations(OBS, np.zeros(shape), D)
    assert "observations" in str(info.value) or "shape" in str(info.value)


FILTERS = {
    "BootstrapPF": lambda em, obs: ax.BootstrapPF(em, obs, SAMPLER),
    "StochasticEnKF": lambda em, obs: ax.StochasticEnKF(em, obs, SAMPLER),
    "ETKF": lambda em, obs: ax.ETKF(em, obs, SAMPLER),
    # The default band (50-60 of 256) is below one particle of 4: a band for N = 4.
    "FAAPF": lambda em, obs: ax.FAAPF(em, obs, SAMPLER, ax.MMPS(iterations=1), tempering=ax.ESSBandTempering(0.3, 0.6)),
    "EnsembleForecast": lambda em, obs: ax.EnsembleForecast(em, obs, SAMPLER),
}


@FAST
@given(st.sampled_from(sorted(FILTERS)), st.integers(0, 6).filter(lambda k: k != P))
def test_step_with_wrong_length_y(name, length):
    filt = FILTERS[name](EM, OBS)
    state = filt.init(np.zeros((N, D), np.float32))
    _refused(lambda: filt.step(state, jnp.zeros(length), jax.random.key(0)), "y has shape", errors.InvalidData)


# --------------------------------------------------------------------------------------
# Valid small inputs: a finite analysis
# --------------------------------------------------------------------------------------


@RUNS
@given(st.sampled_from(sorted(FILTERS)), st.integers(0, 2**31 - 1), st.floats(0.2, 3.0), st.floats(0.0, 0.5))
def test_valid_small_problems_give_finite_analyses(name, seed, std, missing_rate):
    """A random stable linear-Gaussian model, random noise levels and observations (some
    missing, NaN): a 2-cycle `filter_scan` returns finite particles, weights and ESS.
    Every random quantity is an array, so each filter compiles once."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(D, D))
    f = 0.95 * a / max(1.0, np.linalg.norm(a, 2))
    q = np.diag(rng.uniform(0.05, 1.0, D))
    em = ax.LinearGaussianEmulator(f.astype(np.float32), q.astype(np.float32))
    obs = _observation(np.full(P, std, np.float32))
    y = rng.normal(scale=3.0, size=(2, P))
    y[rng.uniform(size=y.shape) < missing_rate] = np.nan
    filt = FILTERS[name](em, obs)
    state = filt.init(rng.normal(size=(N, D)).astype(np.float32))
    _, out = ax.filter_scan(filt, state, y, jax.random.key(seed % 1000))
    assert np.all(np.isfinite(np.asarray(out.particles)))
    assert np.all(np.isfinite(np.asarray(out.log_weights)))
    assert np.all(np.isfinite(np.asarray(out.diagnostics.ess)))
    assert np.all(np.isfinite(np.asarray(out.diagnostics.log_likelihood)))
