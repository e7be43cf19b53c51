"""The core's agreement with exact filters on a linear-Gaussian model (float64).

Model: D = 8, ``x[k+1] = F x[k] + N(0, Q)``, every other component observed with
``R = 0.5^2 I``, 5 cycles, ``x[0] ~ N(0, I)``.  The FA-APF with the exact denoiser, the
Gaussian-predictive weights, no tempering and exact MMPS guidance is the fully-adapted
APF, whose particles are exact posterior draws given their ancestors; the bootstrap PF is
consistent too.  Both must agree with the Kalman filter within Monte Carlo error.

Tolerances.  With ``N_eff`` the smallest ESS of the resampling weights over the cycles
so far (an analysis error at cycle k-1 is carried to cycle k through the resampled
ancestors, so the worst ESS to date bounds the effective sample size), the standard error of a posterior-mean component is ``sqrt(P_jj / N_eff)`` and of a
covariance entry ``sqrt((P_ii P_jj + P_ij^2) / N_eff)`` (Gaussian fourth moments).  We
assert every error is below 5 standard errors: with 5 x 8 means (resp. 5 x 36 covariance
entries) compared, the family-wise false-alarm rate of a correct filter is below 1e-4
(resp. 1e-3) -- and the keys are fixed, so the test is deterministic.  The evidence
estimate ``log sum_i W_i p(y | h_i)`` has standard error ``sqrt(1/ESS_g - 1/N)`` where
``ESS_g`` is the ESS of the predictive likelihoods ``p(y | h_i)`` (again its running
minimum, since a degraded predictive ensemble degrades the estimate).
"""

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from kalman import gaussian_posterior, kalman_filter

D, T, STD_OBS = 8, 5, 0.5


pytestmark = pytest.mark.usefixtures("x64")


def _model():
    rng = np.random.default_rng(0)
    F = 0.9 * np.linalg.qr(rng.normal(size=(D, D)))[0]
    L = 0.3 * rng.normal(size=(D, D))
    Q = L @ L.T + 0.2 * np.eye(D)
    H = np.eye(D)[::2]
    R = STD_OBS**2 * np.eye(D // 2)
    x, ys = rng.normal(size=D), []
    for _ in range(T):
        x = F @ x + np.linalg.cholesky(Q) @ rng.normal(size=D)
        ys.append(H @ x + STD_OBS * rng.normal(size=D // 2))
    ys = np.array(ys)
    ys[2, 1] = np.nan  # one missing observation: dropped from the likelihood
    return F, Q, H, R, ys


def _weighted_moments(particles, log_weights):
    w = np.exp(np.asarray(log_weights))
    x = np.asarray(particles)
    mean = np.einsum("tn,tnd->td", w, x)
    cov = np.array([np.cov(x[t].T, aweights=w[t], ddof=0) for t in range(x.shape[0])])
    return mean, cov


def _check_against_kalman(out, kf_means, kf_covs, ess):
    n_eff = np.minimum.accumulate(ess)
    mean, cov = _weighted_moments(out.particles, out.log_weights)
    var = np.diagonal(kf_covs, axis1=1, axis2=2)
    se_mean = np.sqrt(var / n_eff[:, None])
    assert np.all(np.abs(mean - kf_means) < 5 * se_mean), np.max(np.abs(mean - kf_means) / se_mean)
    se_cov = np.sqrt((var[:, :, None] * var[:, None, :] + kf_covs**2) / n_eff[:, None, None])
    assert np.all(np.abs(cov - kf_covs) < 5 * se_cov), np.max(np.abs(cov - kf_covs) / se_cov)


def _run_fa_apf(guidance, n=4000):
    F, Q, H, R, ys = _model()
    emulator = ax.LinearGaussianEmulator(F, Q)
    observation = ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(STD_OBS, D // 2))
    sampler = ax.Sampler(ax.EDMSchedule(1e-4, 100.0, 7.0), 64, diffrax.Heun())
    filt = ax.FAAPF(
        emulator,
        observation,
        sampler,
        guidance=guidance,
        weighting=ax.GaussianPredictiveWeights(Q),
        tempering=ax.NoTempering(),
    )
    state = filt.init(jax.random.normal(jax.random.key(1), (n, D)))
    _, out = ax.filter_scan(filt, state, ys, jax.random.key(2))
    return out


def test_fa_apf_exact_matches_kalman():
    F, Q, H, R, ys = _model()
    kf_means, kf_covs, kf_evidence = kalman_filter(F, Q, H, R, np.zeros(D), np.eye(D), ys)
    n = 4000
    out = _run_fa_apf(ax.MMPS(lx.LU()), n)
    diag = out.diagnostics
    np.testing.assert_array_equal(np.asarray(diag.alpha), 1.0)
    # Particles within a cycle are drawn given resampled ancestors: N_eff = first-stage ESS.
    _check_against_kalman(out, kf_means, kf_covs, np.asarray(diag.ess))
    ess_g = np.asarray(diag.ess)  # alpha = 1 and uniform W: the ESS of p(y | h_i)
    se = np.sqrt(1 / np.minimum.accumulate(ess_g) - 1 / n)
    assert np.all(np.abs(np.asarray(diag.log_likelihood) - kf_evidence) < 5 * se)


def test_kalman_check_rejects_dps_guidance():
    """Negative control: the same check has the power to reject an inexact proposal."""
    F, Q, H, R, ys = _model()
    kf_means, kf_covs, _ = kalman_filter(F, Q, H, R, np.zeros(D), np.eye(D), ys)
    out = _run_fa_apf(ax.DPS())
    with pytest.raises(AssertionError):
        _check_against_kalman(out, kf_means, kf_covs, np.asarray(out.diagnostics.ess))


def test_bootstrap_matches_kalman():
    F, Q, H, R, ys = _model()
    kf_means, kf_covs, kf_evidence = kalman_filter(F, Q, H, R, np.zeros(D), np.eye(D), ys)
    emulator = ax.LinearGaussianEmulator(F, Q)
    observation = ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(STD_OBS, D // 2))
    sampler = ax.Sampler(ax.EDMSchedule(1e-4, 100.0, 7.0), 32, ax.DPMSolverPP2S())
    filt = ax.BootstrapPF(emulator, observation, sampler)
    n = 20000
    state = filt.init(jax.random.normal(jax.random.key(3), (n, D)))
    _, out = ax.filter_scan(filt, state, ys, jax.random.key(4))
    ess = np.asarray(out.diagnostics.ess)
    _check_against_kalman(out, kf_means, kf_covs, ess)
    se = np.sqrt(1 / np.minimum.accumulate(ess) - 1 / n)
    assert np.all(np.abs(np.asarray(out.diagnostics.log_likelihood) - kf_evidence) < 5 * se)


def test_mmps_posterior_denoiser_is_exact_for_gaussian_prior():
    """For ``x ~ N(m, P)`` and linear observations, ``E[x | x_t, y]`` is Gaussian
    conditioning on two observations (``x_t = x + sigma eps`` and ``y``); MMPS with an
    exact solve returns it to float64 rounding, at every noise level."""
    rng = np.random.default_rng(5)
    L = rng.normal(size=(D, D))
    P = L @ L.T / D + 0.1 * np.eye(D)
    m = rng.normal(size=D)
    H = rng.normal(size=(3, D))
    R = np.diag([0.1, 0.5, 1.0]) ** 2
    y = rng.normal(size=3)
    denoiser = ax.GaussianDenoiser(P)
    noise = ax.DenseGaussianNoise(R)
    operator = ax.MatrixOperator(H)
    for sigma in [1e-3, 0.3, 3.0, 80.0]:
        x_t = m + rng.normal(size=D) * np.sqrt(np.diag(P) + sigma**2)
        got = ax.MMPS(lx.LU())(lambda x: denoiser(x, sigma, m), jnp.asarray(x_t), sigma, jnp.asarray(y), operator, noise)
        H2 = np.vstack([np.eye(D), H])
        R2 = np.block([[sigma**2 * np.eye(D), np.zeros((D, 3))], [np.zeros((3, D)), R]])
        want, _ = gaussian_posterior(m, P, H2, R2, np.concatenate([x_t, y]))
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-8, atol=1e-8)


def test_stochastic_enkf_matches_kalman():
    """On a linear-Gaussian model the EnKF's moments converge to the Kalman filter's.

    The EnKF's Monte Carlo error is not ``sqrt(P/n)``: the gain is estimated from the
    ensemble and multiplies the innovation, which is large here (the first observation lies
    in the prior's tail), and the stochastic EnKF has an O(1/n) bias from that same sampled
    gain.  So the standard error is measured: the spread of 8 independent runs of n = 4000
    members, pooled over components in units of the Kalman
    standard deviations, scaled by sqrt(4000 / 32000) to one run of n = 32000, where the O(1/n) bias
    is an eighth of its n = 4000 size and negligible against the tolerance of 5 standard
    errors (checked: at n = 10^6 a NumPy EnKF is within 0.004 of the Kalman mean)."""
    F, Q, H, R, ys = _model()
    kf_means, kf_covs, _ = kalman_filter(F, Q, H, R, np.zeros(D), np.eye(D), ys)
    emulator = ax.LinearGaussianEmulator(F, Q)
    observation = ax.ObservationModel(ax.Selection.every(2, D), ax.DiagonalGaussianNoise(STD_OBS, D // 2))
    # A fine sampler: at large n the EnKF resolves a 1% transition-covariance error.
    sampler = ax.Sampler(ax.EDMSchedule(1e-5, 100.0, 7.0), 96, diffrax.Heun())
    filt = ax.StochasticEnKF(emulator, observation, sampler)

    def run(n, seed):
        state = filt.init(jax.random.normal(jax.random.key(100 + seed), (n, D)))
        _, out = ax.filter_scan(filt, state, ys, jax.random.key(200 + seed))
        return _weighted_moments(out.particles, out.log_weights)

    small = [run(4000, r) for r in range(8)]
    mean, cov = run(32000, 99)
    # Pool the measured spread over components and times, in units of the Kalman
    # moments' natural scales, so 8 runs give one well-determined constant each.
    var = np.diagonal(kf_covs, axis1=1, axis2=2)
    unit_mean = np.sqrt(var)
    unit_cov = np.sqrt(var[:, :, None] * var[:, None, :] + kf_covs**2)
    c_mean = np.sqrt(np.mean(np.var([m for m, _ in small], axis=0, ddof=1) / unit_mean**2))
    c_cov = np.sqrt(np.mean(np.var([c for _, c in small], axis=0, ddof=1) / unit_cov**2))
    scale = np.sqrt(4000 / 32000)
    z_mean = np.abs(mean - kf_means) / (c_mean * scale * unit_mean)
    z_cov = np.abs(cov - kf_covs) / (c_cov * scale * unit_cov)
    assert z_mean.max() < 5, z_mean.max()
    assert z_cov.max() < 5, z_cov.max()


def test_diagonal_gaussian_denoiser_equals_the_dense_one():
    """The O(d) diagonal denoiser is the dense exact denoiser of diag(v) (to float32 rounding),
    and `GaussianTransitionEmulator` takes a diagonal vector for a diagonal Q."""
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    v = jnp.concatenate([jnp.zeros(1), jax.random.uniform(k1, (15,), minval=0.1, maxval=3.0)])
    x = 3.0 * jax.random.normal(k2, (16,))
    m = jax.random.normal(k3, (16,))
    diag, dense = ax.DiagonalGaussianDenoiser(v), ax.GaussianDenoiser(jnp.diag(v))
    for sigma in (1e-3, 0.5, 80.0):
        for context in (None, m):
            np.testing.assert_allclose(diag(x, sigma, context), dense(x, sigma, context), rtol=1e-5, atol=1e-5)
    em = ax.GaussianTransitionEmulator(lambda s: 0.5 * s, v)
    assert isinstance(em.denoiser, ax.DiagonalGaussianDenoiser)
    np.testing.assert_allclose(em.transition_covariance, jnp.diag(v))
    with pytest.raises(ax.errors.InvalidArgument, match="variances"):
        ax.DiagonalGaussianDenoiser(-v - 1.0)
    with pytest.raises(TypeError):  # the test-time shape checker; InvalidArgument without it
        ax.GaussianTransitionEmulator(lambda s: s, jnp.ones((2, 3)))
