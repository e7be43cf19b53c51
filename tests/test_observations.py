"""Observation operators and noise (`assimilax.observations`).

Operators are checked against NumPy re-implementations (exact up to float32 rounding:
``rtol = 1e-6``) or against functions they must reproduce exactly (multilinear
interpolation of a linear function).  Noise densities are compared with
`scipy.stats.multivariate_normal` in float64 (``rtol = 1e-10``: both sides are exact
formulas).  The sample covariance of `noise.sample` is a Monte Carlo check with stated
standard errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import assimilax as ax


def _x(d, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=d), jnp.float32)


# --------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------


def test_selection_from_mask_and_every():
    x = _x(10)
    mask = np.zeros(10, bool)
    mask[[1, 4, 5, 9]] = True
    sel = ax.Selection.from_mask(mask)
    assert sel.obs_size == 4 and sel.state_size == 10
    np.testing.assert_array_equal(np.asarray(sel(x)), np.asarray(x)[mask])
    every = ax.Selection.every(3, 10, offset=1)
    assert every.obs_size == 3
    np.testing.assert_array_equal(np.asarray(every(x)), np.asarray(x)[1::3])
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        ax.Selection(np.array([0, 10]), 10)
    with pytest.raises(ValueError, match="empty"):
        ax.Selection.from_mask(np.zeros(10, bool))
    with pytest.raises(ValueError, match="n >= 1"):
        ax.Selection.every(0, 10)


def test_matrix_operator():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(3, 7)).astype(np.float32)
    op = ax.MatrixOperator(h)
    assert (op.obs_size, op.state_size) == (3, 7)
    x = _x(7)
    np.testing.assert_allclose(np.asarray(op(x)), h @ np.asarray(x), rtol=1e-5, atol=1e-6)
    # A 1-D matrix: rejected by the shape annotation (TypeError under the test-time type
    # checker) or by the constructor (ValueError without it).
    with pytest.raises((TypeError, ValueError), match="2-D|matrix"):
        ax.MatrixOperator(np.ones(3))


@pytest.mark.parametrize(
    "shape, block", [((12,), (3,)), ((6, 8), (2, 4)), ((4, 6, 6), (2, 3, 1))]
)
def test_block_mean_matches_numpy(shape, block):
    size = int(np.prod(shape))
    offset = 5  # a first variable of 5 entries before the coarsened one
    x = _x(offset + size + 3)
    op = ax.BlockMean(shape, block, state_size=x.shape[0], offset=offset)
    field = np.asarray(x)[offset : offset + size].reshape(shape)
    split = [s for n, b in zip(shape, block) for s in (n // b, b)]
    want = field.reshape(split).mean(axis=tuple(range(1, 2 * len(shape), 2))).reshape(-1)
    assert op.obs_size == want.size
    np.testing.assert_allclose(np.asarray(op(x)), want, rtol=1e-6, atol=1e-6)


def test_block_mean_rejects_bad_blocks():
    with pytest.raises(ValueError, match="does not divide"):
        ax.BlockMean((6, 8), (4, 4), state_size=48)
    with pytest.raises(ValueError, match="rank"):
        ax.BlockMean((6, 8), (2,), state_size=48)
    with pytest.raises(ValueError, match="does not fit"):
        ax.BlockMean((6, 8), (2, 2), state_size=48, offset=1)


def test_interpolation_exact_on_linear_1d():
    axis = np.array([0.0, 0.5, 1.7, 2.0, 3.5, 5.0])  # non-uniform
    x = jnp.asarray(2.0 - 0.7 * axis, jnp.float32)
    points = np.array([[0.0], [0.25], [1.7], [1.9], [4.99], [5.0]])
    op = ax.Interpolation([axis], points, state_size=axis.size)
    np.testing.assert_allclose(np.asarray(op(x)), 2.0 - 0.7 * points[:, 0], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="outside axis 0"):
        ax.Interpolation([axis], np.array([[5.5]]), state_size=axis.size)


def test_interpolation_exact_on_bilinear_2d():
    ax0 = np.array([-1.0, 0.0, 0.3, 2.0])
    ax1 = np.array([10.0, 11.0, 13.0, 16.0, 20.0])
    g0, g1 = np.meshgrid(ax0, ax1, indexing="ij")
    # Multilinear interpolation reproduces a + b u + c v + e u v exactly.
    f = lambda u, v: 1.0 + 0.5 * u - 0.2 * v + 0.1 * u * v  # noqa: E731
    offset = 3
    state = np.concatenate([np.full(offset, 99.0), f(g0, g1).ravel(), [42.0]])
    rng = np.random.default_rng(2)
    points = np.stack([rng.uniform(-1, 2, 20), rng.uniform(10, 20, 20)], axis=1)
    op = ax.Interpolation([ax0, ax1], points, state_size=state.size, offset=offset)
    assert op.obs_size == 20
    np.testing.assert_allclose(
        np.asarray(op(jnp.asarray(state, jnp.float32))), f(points[:, 0], points[:, 1]), rtol=1e-5
    )


def test_interpolation_periodic_ring():
    n = 40
    axis = np.arange(n, dtype=float)
    x = _x(n, seed=3)
    xs = np.asarray(x)
    points = np.array([[39.5], [-0.5], [40.25], [0.25], [79.0], [12.0]])
    op = ax.Interpolation([axis], points, state_size=n, periodic=[float(n)])
    want = np.array(
        [
            0.5 * xs[39] + 0.5 * xs[0],
            0.5 * xs[39] + 0.5 * xs[0],
            0.75 * xs[0] + 0.25 * xs[1],
            0.75 * xs[0] + 0.25 * xs[1],
            xs[39],
            xs[12],
        ]
    )
    np.testing.assert_allclose(np.asarray(op(x)), want, rtol=1e-6, atol=1e-6)


def test_stack():
    x = _x(12)
    a = ax.Selection.every(4, 12)
    b = ax.BlockMean((12,), (6,), state_size=12)
    c = ax.MatrixOperator(np.ones((1, 12), np.float32))
    op = ax.Stack([a, b, c])
    assert op.obs_size == 3 + 2 + 1 and op.state_size == 12
    np.testing.assert_allclose(
        np.asarray(op(x)), np.concatenate([a(x), b(x), c(x)]), rtol=1e-6
    )
    with pytest.raises(ValueError, match="different state sizes"):
        ax.Stack([a, ax.Selection.every(2, 10)])
    with pytest.raises(ValueError, match="at least one"):
        ax.Stack([])


def test_function_operator_nonlinear():
    fn = lambda x: jnp.stack([x[0] * x[1], jnp.sin(x[2]), jnp.sum(x**2)])  # noqa: E731
    op = ax.FunctionOperator(fn, obs_size=3, state_size=4)
    x = _x(4, seed=4)
    xs = np.asarray(x)
    want = [xs[0] * xs[1], np.sin(xs[2]), np.sum(xs**2)]
    np.testing.assert_allclose(np.asarray(op(x)), want, rtol=1e-6)
    # Differentiable: the guidance linearises it.
    jac = np.asarray(jax.jacfwd(op)(x))
    np.testing.assert_allclose(jac[2], 2 * xs, rtol=1e-6)
    with pytest.raises(ValueError, match="size 4"):
        op.check_state_size(5)


# --------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------


def _dense_cov(p, seed=5):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(p, p))
    return L @ L.T / p + 0.2 * np.eye(p)


def _noises(p):
    std = np.linspace(0.3, 1.5, p)
    return {
        "diagonal": (ax.DiagonalGaussianNoise(std), np.diag(std**2)),
        "dense": (ax.DenseGaussianNoise(_dense_cov(p)), _dense_cov(p)),
    }


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
def test_log_prob_matches_scipy_on_observed_subset(x64, kind):
    p, d = 6, 9
    noise, R = _noises(p)[kind]
    rng = np.random.default_rng(6)
    H = rng.normal(size=(p, d))
    model = ax.ObservationModel(ax.MatrixOperator(H), noise)
    x = rng.normal(size=d)
    y = H @ x + rng.multivariate_normal(np.zeros(p), R)
    full = stats.multivariate_normal(H @ x, R).logpdf(y)
    np.testing.assert_allclose(float(model.log_likelihood(jnp.asarray(y), jnp.asarray(x))), full, rtol=1e-10)
    y_missing = y.copy()
    y_missing[[1, 4]] = np.nan
    obs = np.isfinite(y_missing)
    want = stats.multivariate_normal((H @ x)[obs], R[np.ix_(obs, obs)]).logpdf(y[obs])
    got = float(model.log_likelihood(jnp.asarray(y_missing), jnp.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # All missing: the likelihood is empty (log 1 = 0).
    assert float(model.log_likelihood(jnp.full(p, jnp.nan), jnp.asarray(x))) == 0.0


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
def test_masked_linear_algebra(x64, kind):
    """``matvec``, ``shifted_solve`` and ``log_det`` act on ``R[mask][:, mask]`` (identity
    elsewhere), which the guidance relies on."""
    p = 6
    noise, R = _noises(p)[kind]
    mask = np.array([True, False, True, True, False, True])
    Rm = np.where(mask[:, None] & mask[None, :], R, np.eye(p))
    v = np.random.default_rng(7).normal(size=p)
    m = jnp.asarray(mask)
    np.testing.assert_allclose(np.asarray(noise.matvec(jnp.asarray(v), m)), Rm @ v, rtol=1e-10)
    got = np.asarray(noise.shifted_solve(jnp.asarray(v), m, 0.7))
    np.testing.assert_allclose(got, np.linalg.solve(Rm + 0.7 * np.eye(p), v), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(noise.solve(jnp.asarray(v), m)), np.linalg.solve(Rm, v), rtol=1e-10)
    np.testing.assert_allclose(float(noise.log_det(m)), np.linalg.slogdet(R[np.ix_(mask, mask)])[1], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(noise.covariance()), R, rtol=1e-12)


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
def test_sample_covariance(kind):
    """Mean and covariance of ``noise.sample`` over N draws.  Standard errors (Gaussian
    moments): ``sqrt(R_ii / N)`` for a mean and ``sqrt((R_ii R_jj + R_ij^2) / N)`` for a
    covariance entry; we assert 5 SE over 6 + 21 comparisons (family-wise false alarm
    < 2e-5 for a correct sampler; the keys are fixed)."""
    p, n = 6, 20000
    noise, R = _noises(p)[kind]
    e = np.asarray(jax.vmap(noise.sample)(jax.random.split(jax.random.key(8), n)), np.float64)
    assert e.shape == (n, p)
    var = np.diag(R)
    assert np.all(np.abs(e.mean(0)) < 5 * np.sqrt(var / n))
    se = np.sqrt((var[:, None] * var[None, :] + R**2) / n)
    assert np.all(np.abs(np.cov(e.T) - R) < 5 * se)


@pytest.mark.parametrize(
    "std, match",
    [(-0.1, "strictly positive"), (0.0, "strictly positive"), (np.nan, "NaN"), (np.inf, "inf")],
)
def test_bad_diagonal_noise_raises(std, match):
    with pytest.raises(ValueError, match=match):
        ax.DiagonalGaussianNoise(std, 3)
    with pytest.raises(ValueError, match=match):
        ax.DiagonalGaussianNoise(np.array([1.0, std, 1.0]))


def test_diagonal_noise_shape_errors():
    with pytest.raises(ValueError, match="needs `size`"):
        ax.DiagonalGaussianNoise(1.0)
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        ax.DiagonalGaussianNoise(np.ones(3), 4)


def test_bad_dense_noise_raises():
    with pytest.raises(ValueError, match="positive definite"):
        ax.DenseGaussianNoise(np.array([[1.0, 2.0], [2.0, 1.0]]))  # eigenvalues 3, -1
    with pytest.raises(ValueError, match="positive definite"):
        ax.DenseGaussianNoise(np.zeros((2, 2)) + 1.0)  # singular
    with pytest.raises(ValueError, match="not symmetric"):
        ax.DenseGaussianNoise(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        ax.DenseGaussianNoise(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises((TypeError, ValueError), match="square|covariance"):
        ax.DenseGaussianNoise(np.ones((2, 3)))  # TypeError from the test-time shape checker


# --------------------------------------------------------------------------------------
# The observation model
# --------------------------------------------------------------------------------------


def test_observation_model_size_mismatch_raises():
    with pytest.raises(ValueError, match="returns 5 values but the noise has size 4"):
        ax.ObservationModel(ax.Selection.every(2, 10), ax.DiagonalGaussianNoise(1.0, 4))


def test_observation_model_check():
    model = ax.ObservationModel(ax.Selection.every(2, 10), ax.DiagonalGaussianNoise(1.0, 5))
    model.check(np.zeros((7, 5)), 10)
    model.check(np.full((7, 5), np.nan), 10)  # missing is fine
    with pytest.raises(ValueError, match=r"shape \(7, 4\).*returns 5 values"):
        model.check(np.zeros((7, 4)), 10)
    with pytest.raises(ValueError, match="inf"):
        model.check(np.array([[0.0, 1.0, np.inf, 0.0, 0.0]]), 10)
    with pytest.raises(ValueError, match="size 10, but the state has size 12"):
        model.check(np.zeros((7, 5)), 12)


def test_observation_model_sample_is_operator_plus_noise():
    model = ax.ObservationModel(ax.Selection.every(2, 10), ax.DiagonalGaussianNoise(0.5, 5))
    x = _x(10)
    key = jax.random.key(9)
    np.testing.assert_allclose(
        np.asarray(model.sample(key, x)),
        np.asarray(x)[::2] + np.asarray(model.noise.sample(key)),
        rtol=1e-6,
    )


def test_absolute_and_normalised_wrap_an_operator():
    import jax.numpy as jnp

    sel = ax.Selection.every(2, 6)
    x = jnp.array([-1.0, 2.0, 3.0, -4.0, -5.0, 6.0])
    np.testing.assert_array_equal(ax.Absolute(sel)(x), [1.0, 3.0, 5.0])
    np.testing.assert_allclose(ax.Normalised(ax.Absolute(sel), 1.0, np.array([2.0, 2.0, 4.0]))(x), [0.0, 1.0, 1.0])
    assert ax.Absolute(sel).obs_size == 3 and ax.Absolute(sel).state_size == 6
    with pytest.raises(ax.errors.InvalidArgument, match="state has size 5"):
        ax.Absolute(sel).check_state_size(5)
    with pytest.raises(ax.errors.InvalidArgument, match=r"Normalised: scale\[1\] = 0.0"):
        ax.Normalised(sel, 0.0, np.array([1.0, 0.0, 1.0]))
