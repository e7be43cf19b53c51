"""Local updates: the second-order transform has the weighted moments exactly, and the
localised FA-APF built on it agrees with the Kalman filter; the marginal transport has the
weighted mean and variance, keeps the ranks and keeps two modes with their masses."""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from kalman import kalman_filter


def _weights(key, d, n):
    """Log-weights from flat to nearly degenerate across the components."""
    scale = jnp.linspace(0.0, 4.0, d)[:, None]
    return jax.nn.log_softmax(scale * jax.random.normal(key, (d, n)), axis=1)


@pytest.mark.usefixtures("x64")
def test_mean_preserving_rotation_is_orthogonal_and_keeps_the_ones():
    for n in (2, 5, 64):
        omega = np.asarray(ax.mean_preserving_rotation(jax.random.key(n), n))
        np.testing.assert_allclose(omega @ omega.T, np.eye(n), atol=1e-12)
        np.testing.assert_allclose(omega @ np.ones(n), np.ones(n), atol=1e-12)
    a, b = (np.asarray(ax.mean_preserving_rotation(jax.random.key(k), 16)) for k in (0, 1))
    assert np.abs(a - b).max() > 0.1


@pytest.mark.usefixtures("x64")
def test_second_order_transform_has_the_weighted_mean_and_covariance():
    """Per component and history step: mean ``w^T h`` and covariance (over ``n``)
    ``sum_i w_i (h_i - w^T h)^2``, to float64 rounding, for weights from equal to
    nearly degenerate; and the cross-covariance of two history steps at one component."""
    n, m, d = 32, 2, 12
    particles = jax.random.normal(jax.random.key(0), (n, m, d)) * jnp.arange(1.0, d + 1)
    log_w = _weights(jax.random.key(1), d, n)
    got = np.asarray(ax.SecondOrderTransform()(jax.random.key(2), particles, log_w))
    w = np.exp(np.asarray(log_w))  # (d, n)
    h = np.asarray(particles)
    mean = np.einsum("ln,nml->ml", w, h)
    np.testing.assert_allclose(got.mean(0), mean, atol=1e-10)
    anomalies, new = h - mean, got - mean
    want_cov = np.einsum("ln,nal,nbl->abl", w, anomalies, anomalies)
    got_cov = np.einsum("nal,nbl->abl", new, new) / n
    np.testing.assert_allclose(got_cov, want_cov, atol=1e-10)


@pytest.mark.usefixtures("x64")
def test_second_order_transform_with_equal_weights_rotates_the_anomalies():
    """No information: ``h~ - mean = Omega^T (h - mean)`` at every component, so the
    ensemble's covariance across components is kept too."""
    n, m, d = 16, 1, 6
    particles = jax.random.normal(jax.random.key(3), (n, m, d))
    flat = jnp.full((d, n), -jnp.log(n))
    got = np.asarray(ax.SecondOrderTransform()(jax.random.key(4), particles, flat))
    omega = np.asarray(ax.mean_preserving_rotation(jax.random.key(4), n))
    h = np.asarray(particles)
    want = h.mean(0) + np.einsum("ji,jmd->imd", omega, h - h.mean(0))
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_marginal_transport_has_the_weighted_mean_and_variance():
    """Per component and history step: mean ``w^T h`` exactly; with `rescale` the weighted
    variance exactly, without it no more than the weighted variance (averaging the
    quantile function within bins loses variance), for weights from equal to nearly
    degenerate."""
    n, m, d = 32, 2, 12
    particles = jax.random.normal(jax.random.key(5), (n, m, d)) * jnp.arange(1.0, d + 1)
    log_w = _weights(jax.random.key(6), d, n)
    w, h = np.exp(np.asarray(log_w)), np.asarray(particles)
    mean = np.einsum("ln,nml->ml", w, h)
    var = np.einsum("ln,nml->ml", w, (h - mean) ** 2)
    for rescale in (True, False):
        got = np.asarray(ax.MarginalTransport(rescale)(jax.random.key(7), particles, log_w))
        np.testing.assert_allclose(got.mean(0), mean, atol=1e-10)
        got_var = ((got - mean) ** 2).mean(0)
        if rescale:
            np.testing.assert_allclose(got_var, var, rtol=1e-10)
        else:
            assert np.all(got_var <= var * (1 + 1e-12)) and np.any(got_var < 0.99 * var)


@pytest.mark.usefixtures("x64")
def test_marginal_transport_takes_the_ranks_of_its_copula():
    """``copula=None``, the monotone plan: at every component the new values are in the
    order of the old newest step, and with equal weights every particle stays where it
    is.  The default (the transform's ranks): the same values at every component,
    history pairs kept together, in the order of the transform's newest step."""
    n, m, d = 40, 2, 5
    particles = jax.random.normal(jax.random.key(8), (n, m, d))
    log_w = _weights(jax.random.key(9), d, n)
    own = np.asarray(ax.MarginalTransport(copula=None)(jax.random.key(0), particles, log_w))
    for l in range(d):
        order = np.argsort(np.asarray(particles)[:, -1, l])
        assert np.all(np.diff(own[order, -1, l]) >= -1e-12)
    flat = jnp.full((d, n), -jnp.log(n))
    np.testing.assert_allclose(ax.MarginalTransport(copula=None)(jax.random.key(0), particles, flat), particles, atol=1e-12)

    got = np.asarray(ax.MarginalTransport()(jax.random.key(0), particles, log_w))
    ranked_by = np.asarray(ax.SecondOrderTransform()(jax.random.key(0), particles, log_w))
    for l in range(d):
        by_own = own[np.argsort(own[:, -1, l]), :, l]
        by_copula = got[np.argsort(ranked_by[:, -1, l]), :, l]
        np.testing.assert_allclose(by_copula, by_own, atol=1e-12)
        assert np.all(np.diff(by_copula[:, -1]) >= -1e-12)


def test_marginal_transport_keeps_two_modes_with_their_masses():
    """Particles around -3 and +3 (as for |x| observations with the sign unknown) with
    weights giving the positive mode 70% of the mass: the transport puts 70% of the new
    particles (to 1/n, plus the one bin that straddles the modes) near +3 and 30% near -3,
    none in the gap; the second-order transform, with the same mean and variance, fills
    the gap (the negative control)."""
    n = 200
    key_x, key_w = jax.random.split(jax.random.key(10))
    sign = jnp.where(jnp.arange(n) < n // 2, -1.0, 1.0)
    x = 3.0 * sign + 0.3 * jax.random.normal(key_x, (n,))
    raw = jnp.exp(0.3 * jax.random.normal(key_w, (n,)))
    positive = sign > 0
    w = jnp.where(positive, 0.7 * raw / raw[positive].sum(), 0.3 * raw / raw[~positive].sum())
    log_w = jnp.log(w)[None]  # (1, n): the positive mode has mass 0.7
    particles = x[:, None, None]
    got = np.asarray(ax.MarginalTransport()(jax.random.key(0), particles, log_w))[:, 0, 0]
    assert abs((got > 0).mean() - 0.7) <= 1.5 / n
    assert (np.abs(got) < 1.5).sum() <= 1
    merged = np.asarray(ax.SecondOrderTransform()(jax.random.key(0), particles, log_w))[:, 0, 0]
    assert (np.abs(merged) < 1.5).mean() > 0.1


@pytest.mark.usefixtures("x64")
def test_local_fa_apf_with_the_transform_matches_kalman():
    """Linear-Gaussian model (D = 8, F = 0.9 x orthogonal, Q = 0.3 I, every other
    component observed, R = 0.5^2 I, 5 cycles), no taper, exact denoiser, exact guidance
    and Gaussian-predictive weights (H Q H^T is diagonal, so the product over observations
    is exact): the transform keeps the weighted posterior's first two moments, so the
    filter's ensemble mean and covariance converge to the Kalman filter's.  Tolerance: 5
    standard errors ``sqrt(P_jj / N_eff)`` and ``sqrt((P_ii P_jj + P_ij^2) / N_eff)``,
    ``N_eff`` the running minimum of the first-stage ESS (as for the FA-APF in
    test_exact_filters); negative control: the same check rejects DPS guidance."""
    from test_exact_filters import _check_against_kalman

    d, cycles, std = 8, 5, 0.5
    rng = np.random.default_rng(0)
    f = 0.9 * np.linalg.qr(rng.normal(size=(d, d)))[0]
    v = np.full(d, 0.3)
    h = np.eye(d)[::2]
    x, ys = rng.normal(size=d), []
    for _ in range(cycles):
        x = f @ x + np.sqrt(v) * rng.normal(size=d)
        ys.append(h @ x + std * rng.normal(size=d // 2))
    ys = np.array(ys)
    kf_means, kf_covs, _ = kalman_filter(f, np.diag(v), h, std**2 * np.eye(d // 2), np.zeros(d), np.eye(d), ys)
    observation = ax.ObservationModel(ax.Selection.every(2, d), ax.DiagonalGaussianNoise(std, d // 2))
    loc = ax.DistanceLocalisation.from_operator(ax.Periodic1D(d), np.arange(d), observation.operator, ax.NoTaper())
    n = 2000

    def run(guidance):
        filt = ax.LocalFAAPF(
            ax.LinearGaussianEmulator(f, np.diag(v)),
            observation,
            ax.Sampler(ax.EDMSchedule(2e-3, 80.0, 8.0), 24, ax.DPMSolverPP3M()),
            loc,
            guidance,
            tempering=ax.NoTempering(),
            update=ax.SecondOrderTransform(),
            predictive_variance=0.3,
        )
        _, out = ax.filter_scan(filt, filt.init(jax.random.normal(jax.random.key(1), (n, d))), ys, jax.random.key(2))
        return out

    out = run(ax.MMPS(lx.LU()))
    _check_against_kalman(out, kf_means, kf_covs, np.asarray(out.diagnostics.ess))
    bad = run(ax.DPS())
    with pytest.raises(AssertionError):
        _check_against_kalman(bad, kf_means, kf_covs, np.asarray(bad.diagnostics.ess))


def test_local_updates_by_name():
    assert isinstance(ax.local_update_by_name("transform"), ax.SecondOrderTransform)
    assert isinstance(ax.local_update_by_name("transport"), ax.MarginalTransport)
    assert isinstance(ax.local_update_by_name("resample"), ax.CoupledResampling)
    assert tuple(ax.LOCAL_UPDATE_NAMES) == ("transform", "transport", "resample")
    with pytest.raises(ValueError, match="local_update_by_name: name = 'kalman'"):
        ax.local_update_by_name("kalman")
