"""The block (localised) FA-APF: its pieces, its identity with the FA-APF for one block, and
its exactness against the Kalman filter when the model decouples across the blocks.

Kalman test (float64).  Model: two independent 4-dimensional linear-Gaussian systems side
by side (block-diagonal ``F`` and ``Q``), every other component observed, ``R = 0.5^2 I``,
5 cycles, ``x[0] ~ N(0, I)``.  The posterior factorises over the two blocks, so the block
FA-APF (Gaussian-predictive weights per block, no tempering, exact MMPS proposal) draws
each block exactly as the fully-adapted APF of that block alone: its moments must agree
with the Kalman filter within Monte Carlo error.  Tolerances as in `test_exact_filters.py`:
5 standard errors ``sqrt(P_jj / N_eff)`` for means and ``sqrt((P_ii P_jj + P_ij^2) / N_eff)``
for covariances, with ``N_eff`` the running minimum over cycles of the smallest block ESS
(conservative: each block has its own, larger, ESS); the family-wise false-alarm rate of a
correct filter is below 1e-3 and the keys are fixed.  The evidence is a sum of two
independent block estimates, each with standard error at most ``sqrt(1/N_eff - 1/N)``.
"""

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from kalman import kalman_filter

D, T, STD_OBS = 8, 5, 0.5


def _decoupled_model():
    rng = np.random.default_rng(10)
    F = np.zeros((D, D))
    Q = np.zeros((D, D))
    for b in (slice(0, 4), slice(4, 8)):
        F[b, b] = 0.9 * np.linalg.qr(rng.normal(size=(4, 4)))[0]
        L = 0.4 * rng.normal(size=(4, 4))
        Q[b, b] = L @ L.T + 0.2 * np.eye(4)
    H = np.eye(D)[::2]
    R = STD_OBS**2 * np.eye(D // 2)
    x, ys = rng.normal(size=D), []
    for _ in range(T):
        x = F @ x + np.linalg.cholesky(Q) @ rng.normal(size=D)
        ys.append(H @ x + STD_OBS * rng.normal(size=D // 2))
    ys = np.array(ys)
    ys[3, 2] = np.nan  # a missing observation in the second block
    return F, Q, H, R, ys


def _observation():
    return ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(STD_OBS, D // 2))


def test_block_fa_apf_matches_kalman_on_decoupled_model(x64):
    F, Q, H, R, ys = _decoupled_model()
    kf_means, kf_covs, kf_evidence = kalman_filter(F, Q, H, R, np.zeros(D), np.eye(D), ys)
    observation = _observation()
    localisation = ax.BlockLocalisation.contiguous(D, 4, observation.operator)
    np.testing.assert_array_equal(np.asarray(localisation.obs_blocks), [0, 0, 1, 1])
    filt = ax.BlockFAAPF(
        ax.LinearGaussianEmulator(F, Q),
        observation,
        ax.Sampler(ax.EDMSchedule(1e-4, 100.0, 7.0), 64, diffrax.Heun()),
        localisation,
        guidance=ax.MMPS(lx.LU()),
        weighting=ax.GaussianPredictiveWeights(Q),
        tempering=ax.NoTempering(),
    )
    n = 4000
    state = filt.init(jax.random.normal(jax.random.key(11), (n, D)))
    _, out = ax.filter_scan(filt, state, ys, jax.random.key(12))
    np.testing.assert_array_equal(np.asarray(out.diagnostics.alpha), 1.0)
    np.testing.assert_allclose(np.ptp(np.asarray(out.log_weights), axis=1), 0.0)  # uniform
    n_eff = np.minimum.accumulate(np.asarray(out.diagnostics.ess))
    x = np.asarray(out.particles)
    mean = x.mean(axis=1)
    cov = np.array([np.cov(x[t].T, ddof=0) for t in range(T)])
    var = np.diagonal(kf_covs, axis1=1, axis2=2)
    z_mean = np.abs(mean - kf_means) / np.sqrt(var / n_eff[:, None])
    assert z_mean.max() < 5, z_mean.max()
    se_cov = np.sqrt((var[:, :, None] * var[:, None, :] + kf_covs**2) / n_eff[:, None, None])
    z_cov = np.abs(cov - kf_covs) / se_cov
    assert z_cov.max() < 5, z_cov.max()
    se = np.sqrt(2 * (1 / n_eff - 1 / n))
    assert np.all(np.abs(np.asarray(out.diagnostics.log_likelihood) - kf_evidence) < 5 * se)


def _coupled():
    rng = np.random.default_rng(0)
    F = 0.9 * np.linalg.qr(rng.normal(size=(D, D)))[0]
    Q = 0.3 * np.eye(D)
    ys = rng.normal(size=(3, D // 2)).astype(np.float32)
    return ax.LinearGaussianEmulator(F, Q), ys


@pytest.mark.parametrize("coupled", [False, True])
def test_one_block_is_the_fa_apf(coupled):
    """One block: the same weights, ancestors and proposals as `FAAPF`, bit for bit."""
    emulator, ys = _coupled()
    observation = _observation()
    sampler = ax.Sampler(ax.EDMSchedule(1e-2, 20.0, 7.0), 4)
    loc = ax.BlockLocalisation(np.zeros(D, int), np.zeros(D // 2, int))
    block = ax.BlockFAAPF(emulator, observation, sampler, loc, coupled=coupled)
    plain = ax.FAAPF(emulator, observation, sampler)
    particles = jax.random.normal(jax.random.key(1), (64, D))
    _, a = ax.filter_scan(block, block.init(particles), ys, jax.random.key(2))
    _, b = ax.filter_scan(plain, plain.init(particles), ys, jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(a.particles), np.asarray(b.particles))
    for x, y in zip(jax.tree.leaves(a.diagnostics), jax.tree.leaves(b.diagnostics)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5)


def test_block_filter_spreads_ancestors_per_block():
    """Observations that favour different particles in different blocks: each block of the
    glued histories comes from the particles its own observations favour."""
    emulator = ax.LinearGaussianEmulator(np.eye(D), 1e-4 * np.eye(D))
    observation = ax.ObservationModel(ax.Selection.every(1, D), ax.DiagonalGaussianNoise(0.05, D))
    loc = ax.BlockLocalisation.contiguous(D, 4, observation.operator)
    filt = ax.BlockFAAPF(
        emulator, observation, ax.Sampler(ax.EDMSchedule(1e-2, 20.0, 7.0), 4), loc,
        tempering=ax.NoTempering(),
    )
    particles = jnp.stack([jnp.zeros(D), jnp.ones(D)])  # particle 0 = 0, particle 1 = 1
    y = jnp.concatenate([jnp.zeros(4), jnp.ones(4)])  # block 0 likes 0, block 1 likes 1
    state, diag = filt.step(filt.init(particles), y, jax.random.key(0))
    x = np.asarray(state.particles[:, -1])
    np.testing.assert_allclose(x[:, :4], 0.0, atol=0.1)
    np.testing.assert_allclose(x[:, 4:], 1.0, atol=0.1)
    assert float(diag.ess) == pytest.approx(1.0, abs=1e-3)  # each block is degenerate
    with pytest.raises(AssertionError):  # the global FA-APF cannot do this
        s, _ = ax.FAAPF(emulator, observation, filt.sampler, tempering=ax.NoTempering()).step(
            filt.init(particles), y, jax.random.key(0)
        )
        np.testing.assert_allclose(np.asarray(s.particles[:, -1, :4]), 0.0, atol=0.1)
        np.testing.assert_allclose(np.asarray(s.particles[:, -1, 4:]), 1.0, atol=0.1)


def test_glue_histories():
    particles = jnp.arange(3 * 2 * 4, dtype=float).reshape(3, 2, 4)  # (n, m, d)
    ancestors = jnp.array([[2, 2, 0], [1, 0, 0]])  # (blocks, n)
    glued = ax.filters.glue_histories(particles, ancestors, jnp.array([0, 0, 1, 1]))
    p = np.asarray(particles)
    want = np.stack(
        [np.concatenate([p[a0, :, :2], p[a1, :, 2:]], axis=-1) for a0, a1 in [(2, 1), (2, 0), (0, 0)]]
    )
    np.testing.assert_array_equal(np.asarray(glued), want)


def test_localisation_assigns_observations():
    d = 12
    blocks = np.arange(d) // 4
    sel = ax.BlockLocalisation.from_state_blocks(blocks, ax.Selection(jnp.array([11, 0, 5]), d))
    np.testing.assert_array_equal(np.asarray(sel.obs_blocks), [2, 0, 1])
    mean = ax.BlockLocalisation.from_state_blocks(blocks, ax.BlockMean((d,), (3,), d))
    # components 3-5: one in block 0, two in block 1; 6-8: two in block 1, one in block 2
    np.testing.assert_array_equal(np.asarray(mean.obs_blocks), [0, 1, 1, 2])
    interp = ax.BlockLocalisation.from_state_blocks(
        blocks, ax.Interpolation([np.arange(d)], np.array([[3.2], [3.8]]), d, periodic=[float(d)])
    )
    np.testing.assert_array_equal(np.asarray(interp.obs_blocks), [0, 1])
    nonlinear = ax.FunctionOperator(lambda x: jnp.stack([x[2] ** 2, jnp.sin(x[9])]), 2, d)
    loc = ax.BlockLocalisation.from_state_blocks(blocks, nonlinear, at=jnp.ones(d))
    np.testing.assert_array_equal(np.asarray(loc.obs_blocks), [0, 2])
    with pytest.raises(ValueError, match="observation 0 does not depend"):
        ax.BlockLocalisation.from_state_blocks(blocks, nonlinear)  # d(x^2)/dx = 0 at 0


def test_localisation_errors():
    with pytest.raises(ValueError, match="outside"):
        ax.BlockLocalisation([0, 1, 2], [0, 3], n_blocks=3)
    with pytest.raises(ValueError, match="1-D integer"):
        ax.BlockLocalisation(np.array([0.0, 1.0]), [0])
    with pytest.raises(ValueError, match="block_size"):
        ax.BlockLocalisation.contiguous(8, 0, ax.Selection.every(2, 8))
    emulator, _ = _coupled()
    loc = ax.BlockLocalisation.contiguous(4, 2, ax.Selection.every(2, 4))
    with pytest.raises(ValueError, match="4 state components"):
        ax.BlockFAAPF(emulator, _observation(), ax.Sampler(ax.EDMSchedule(1e-2, 20.0, 7.0), 4), loc)


@pytest.mark.parametrize("missing", [False, True])
def test_block_weights_sum_to_the_global_rule(x64, missing):
    """Independent noise: the Dirac block terms sum to the global log-likelihood, and the
    fast (segment-sum) path equals the generic masked path of the base class."""
    rng = np.random.default_rng(3)
    d, p = 10, 6
    operator = ax.MatrixOperator(rng.normal(size=(p, d)))
    std = rng.uniform(0.3, 1.0, size=p)
    y = rng.normal(size=p)
    if missing:
        y[1] = np.nan
    mean = jnp.asarray(rng.normal(size=d))
    obs_blocks = jnp.array([0, 2, 1, 1, 0, 2])
    diag = ax.ObservationModel(operator, ax.DiagonalGaussianNoise(std))
    dense = ax.ObservationModel(operator, ax.DenseGaussianNoise(np.diag(std**2)))
    rule = ax.DiracWeights()
    fast = rule.blocks(diag, jnp.asarray(y), mean, obs_blocks, 3)
    generic = rule.blocks(dense, jnp.asarray(y), mean, obs_blocks, 3)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(generic), rtol=1e-12)
    np.testing.assert_allclose(float(fast.sum()), float(rule(diag, jnp.asarray(y), mean)), rtol=1e-12)
    # The Gaussian-predictive rule per block: the marginal of y_b.
    Q = np.eye(d)
    g = ax.GaussianPredictiveWeights(Q).blocks(diag, jnp.asarray(y), mean, obs_blocks, 3)
    from scipy.stats import multivariate_normal

    S = operator.matrix @ Q @ operator.matrix.T + np.diag(std**2)
    r = y - np.asarray(operator(mean))
    for b in range(3):
        idx = [j for j in range(p) if obs_blocks[j] == b and np.isfinite(y[j])]
        want = multivariate_normal(np.zeros(len(idx)), S[np.ix_(idx, idx)]).logpdf(r[idx])
        np.testing.assert_allclose(float(g[b]), want, rtol=1e-10)


def test_diagonal_predictive_weights_equal_the_dense_rule():
    """With a diagonal Q and observations that share no state component (a selection,
    disjoint 2 x 2 block means), `DiagonalPredictiveWeights.from_transition_variance` is
    `GaussianPredictiveWeights(diag(v))` exactly (float32 rounding), whole and per block;
    for the block means ``s_j = v / 4``."""
    import assimilax as ax

    v = jnp.linspace(0.1, 0.9, 16)
    key_y, key_m = jax.random.split(jax.random.key(0))
    for operator in (ax.Selection.every(2, 16), ax.BlockMean((4, 4), (2, 2), 16)):
        p = operator.obs_size
        observation = ax.ObservationModel(operator, ax.DiagonalGaussianNoise(jnp.linspace(0.3, 0.6, p)))
        y = jax.random.normal(key_y, (p,)).at[1].set(jnp.nan)
        mean = jax.random.normal(key_m, (16,))
        diag = ax.DiagonalPredictiveWeights.from_transition_variance(operator, v)
        dense = ax.GaussianPredictiveWeights(jnp.diag(v))
        np.testing.assert_allclose(diag(observation, y, mean), dense(observation, y, mean), rtol=1e-5)
        blocks = jnp.arange(p) % 3
        np.testing.assert_allclose(
            diag.blocks(observation, y, mean, blocks, 3), dense.blocks(observation, y, mean, blocks, 3), rtol=1e-5
        )
    iso = ax.DiagonalPredictiveWeights.from_transition_variance(ax.BlockMean((4, 4), (2, 2), 16), 0.8)
    np.testing.assert_allclose(iso.variances, 0.2, rtol=1e-6)
    with pytest.raises(ax.errors.InvalidArgument, match="variances"):
        ax.DiagonalPredictiveWeights(-jnp.ones(3))
