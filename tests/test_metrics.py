"""Tests of assimilax.metrics against direct NumPy / SciPy computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from assimilax import metrics

# float32 JAX against float64 NumPy on O(1) data: relative errors are a few 1e-7 per
# operation; 1e-5 leaves room for the sums over a few hundred terms.
RTOL = 1e-5
ATOL = 1e-6


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n, lat, lon = 7, 5, 6
    ens = rng.normal(size=(n, lat, lon)) * 1.3 + 0.4
    truth = rng.normal(size=(lat, lon))
    w = rng.uniform(0.1, 1.0, size=n)
    w = w / w.sum()
    lats = np.linspace(-80.0, 80.0, lat)
    area = np.cos(np.deg2rad(lats))[:, None]
    return ens.astype(np.float32), truth.astype(np.float32), w.astype(np.float32), lats, area


def _np_crps(ens, y, w=None, fair=False):
    """Direct double sum, one component at a time: E|X - y| - 0.5 E|X - X'|."""
    n = ens.shape[0]
    w = np.full(n, 1.0 / n) if w is None else np.asarray(w, float) / np.sum(w)
    e = ens.reshape(n, -1).astype(float)
    out = []
    for j, yj in enumerate(np.asarray(y, float).reshape(-1)):
        t1 = np.sum(w * np.abs(e[:, j] - yj))
        t2 = np.sum(w[:, None] * w[None, :] * np.abs(e[:, j, None] - e[None, :, j]))
        if fair:
            t2 = t2 / (1.0 - np.sum(w**2))
        out.append(t1 - 0.5 * t2)
    return np.array(out).reshape(np.shape(y))


def test_latitude_weights():
    lats = np.array([-60.0, 0.0, 30.0, 90.0])
    a = metrics.latitude_weights(lats)
    c = np.cos(np.deg2rad(lats))
    np.testing.assert_allclose(a, c / c.mean(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(jnp.mean(a)), 1.0, rtol=RTOL)


def test_unweighted_against_numpy(data):
    ens, y, _, _, area = data
    a = np.broadcast_to(area, y.shape)
    m = ens.astype(float).mean(0)
    var = ens.astype(float).var(0, ddof=1)
    np.testing.assert_allclose(metrics.ensemble_mean(ens), m, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(metrics.ensemble_variance(ens), var, rtol=RTOL, atol=ATOL)
    rmse = np.sqrt(np.mean((m - y) ** 2))
    rmse_a = np.sqrt(np.average((m - y) ** 2, weights=a))
    np.testing.assert_allclose(metrics.skill(ens, y), rmse, rtol=RTOL)
    np.testing.assert_allclose(metrics.skill(ens, y, area_weights=area), rmse_a, rtol=RTOL)
    np.testing.assert_allclose(metrics.spread(ens), np.sqrt(var.mean()), rtol=RTOL)
    np.testing.assert_allclose(
        metrics.spread(ens, area_weights=area), np.sqrt(np.average(var, weights=a)), rtol=RTOL
    )
    np.testing.assert_allclose(
        metrics.spread_skill_ratio(ens, y, area_weights=area),
        np.sqrt(np.average(var, weights=a)) / rmse_a,
        rtol=RTOL,
    )
    n = ens.shape[0]
    np.testing.assert_allclose(
        metrics.spread_skill_ratio(ens, y, finite_ensemble_correction=True),
        np.sqrt(var.mean()) / rmse * np.sqrt((n + 1) / n),
        rtol=RTOL,
    )


def test_weighted_against_numpy(data):
    ens, y, w, _, area = data
    e = ens.astype(float)
    m = np.einsum("i,ijk->jk", w, e)
    var = np.einsum("i,ijk->jk", w, (e - m) ** 2) / (1.0 - np.sum(w.astype(float) ** 2))
    a = np.broadcast_to(area, y.shape)
    np.testing.assert_allclose(metrics.ensemble_mean(ens, w), m, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(metrics.ensemble_variance(ens, w), var, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        metrics.skill(ens, y, w, area), np.sqrt(np.average((m - y) ** 2, weights=a)), rtol=RTOL
    )
    np.testing.assert_allclose(
        metrics.spread(ens, w, area), np.sqrt(np.average(var, weights=a)), rtol=RTOL
    )
    # Unnormalised weights are normalised.
    np.testing.assert_allclose(metrics.skill(ens, y, 3.0 * w), metrics.skill(ens, y, w), rtol=RTOL)


@pytest.mark.parametrize("fair", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_crps_against_double_sum(data, fair, weighted):
    ens, y, w, _, area = data
    w = w if weighted else None
    expected = _np_crps(ens, y, w, fair)
    np.testing.assert_allclose(
        metrics.crps_components(ens, y, w, fair=fair), expected, rtol=RTOL, atol=ATOL
    )
    a = np.broadcast_to(area, y.shape)
    np.testing.assert_allclose(
        metrics.crps(ens, y, w, area, fair=fair), np.average(expected, weights=a), rtol=RTOL
    )


def test_crps_with_ties_and_offset():
    # Tied members and a large common offset (temperatures in K): sorting with ties and the
    # centring on the truth must not matter.
    ens = np.array([[280.0, 281.0], [280.0, 283.0], [282.5, 281.0], [280.0, 280.0]], np.float32)
    y = np.array([281.0, 281.5], np.float32)
    np.testing.assert_allclose(metrics.crps_components(ens, y), _np_crps(ens, y), rtol=RTOL)
    np.testing.assert_allclose(
        metrics.crps_components(ens, y, fair=True), _np_crps(ens, y, fair=True), rtol=RTOL
    )


def test_crps_single_member_is_absolute_error():
    x = np.array([[1.5, -2.0, 0.25]], np.float32)
    y = np.array([0.5, 1.0, 0.25], np.float32)
    np.testing.assert_allclose(metrics.crps_components(x, y), np.abs(x[0] - y), rtol=RTOL)
    np.testing.assert_allclose(metrics.crps(x, y), np.mean(np.abs(x[0] - y)), rtol=RTOL)


def test_crps_gaussian_closed_form():
    # CRPS(N(mu, s^2), y) = s (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)), z = (y - mu) / s.
    mu, s, y = 0.3, 1.7, 1.1
    z = (y - mu) / s
    phi, cdf = scipy.stats.norm.pdf(z), scipy.stats.norm.cdf(z)
    exact = s * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    n, d = 500, 400
    ens = (mu + s * np.random.default_rng(1).normal(size=(n, d))).astype(np.float32)
    truth = np.full((d,), y, np.float32)
    fair = np.asarray(metrics.crps_components(ens, truth, fair=True), float)
    standard = np.asarray(metrics.crps_components(ens, truth), float)
    # Tolerance: the d columns are independent ensembles, so the per-column estimates are iid
    # and their mean has Monte Carlo standard error se = std / sqrt(d) (CLT, d = 400).  The fair
    # estimator is unbiased; the standard one exceeds it in expectation by
    # E|X - X'| / (2n) = s / (n sqrt(pi)).  We allow 5 se (two-sided false alarm ~ 6e-7 for
    # fresh data; the key is fixed anyway) and check that se is small enough (< 1% of the
    # value) for the comparison to mean something.
    se = fair.std(ddof=1) / math.sqrt(d)
    assert se < 0.01 * exact
    assert abs(fair.mean() - exact) < 5 * se
    bias = s / (n * math.sqrt(math.pi))
    assert abs(standard.mean() - (exact + bias)) < 5 * se


def test_uniform_weights_equal_unweighted(data):
    ens, y, _, _, area = data
    u = np.full(ens.shape[0], 1.0 / ens.shape[0], np.float32)
    for f in (metrics.skill, metrics.spread_skill_ratio, metrics.crps):
        np.testing.assert_allclose(f(ens, y, u, area), f(ens, y, None, area), rtol=RTOL)
    np.testing.assert_allclose(
        metrics.spread(ens, u, area), metrics.spread(ens, None, area), rtol=RTOL
    )
    np.testing.assert_allclose(
        metrics.crps(ens, y, u, fair=True), metrics.crps(ens, y, fair=True), rtol=RTOL
    )
    np.testing.assert_allclose(
        metrics.spread_skill_ratio(ens, y, u, finite_ensemble_correction=True),
        metrics.spread_skill_ratio(ens, y, finite_ensemble_correction=True),
        rtol=RTOL,
    )


def test_jit_and_vmap_over_cycles(data):
    ens, y, w, _, area = data
    ens_t = jnp.stack([ens, ens + 1.0, 2.0 * ens])  # (time, n, lat, lon)
    y_t = jnp.stack([y, y, y])

    @jax.jit
    def all_metrics(e, t, w):
        return jnp.stack(
            [
                metrics.skill(e, t, w, area),
                metrics.spread(e, w, area),
                metrics.spread_skill_ratio(e, t, w, area),
                metrics.crps(e, t, w, area),
            ]
        )

    out = jax.vmap(all_metrics, in_axes=(0, 0, None))(ens_t, y_t, w)
    for k in range(3):
        e = np.asarray(ens_t[k])
        expected = [
            metrics.skill(e, y, w, area),
            metrics.spread(e, w, area),
            metrics.spread_skill_ratio(e, y, w, area),
            metrics.crps(e, y, w, area),
        ]
        np.testing.assert_allclose(out[k], np.array(expected), rtol=RTOL)
    hist = jax.jit(metrics.rank_histogram)(ens, y, jax.random.key(0))
    assert hist.shape == (ens.shape[0] + 1,)


def test_rank_histogram_against_numpy(data):
    ens, y, _, _, _ = data
    ranks = np.sum(ens < y, axis=0).reshape(-1)
    expected = np.bincount(ranks, minlength=ens.shape[0] + 1)
    np.testing.assert_array_equal(metrics.rank_histogram(ens, y), expected)
    np.testing.assert_array_equal(metrics.rank_histogram(ens, y, jax.random.key(3)), expected)


def test_rank_histogram_ties():
    ens = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 2.0], [1.0, 3.0, 2.0]], np.float32)  # n = 3
    y = np.array([1.0, 1.0, 2.0], np.float32)
    # Component 0: 1 below, 2 equal -> 1 + 2 // 2 = 2.  Component 1: 0 below, 2 equal -> 1.
    # Component 2: 0 below, 3 equal -> 1.
    np.testing.assert_array_equal(metrics.rank_histogram(ens, y), [0, 2, 1, 0])
    # Random tie-breaking draws a rank in {below, ..., below + equal}.
    keys = jax.random.split(jax.random.key(0), 40)
    hist_fn = jax.vmap(metrics.rank_histogram, in_axes=(None, None, 0))
    hists = np.asarray(hist_fn(ens[:, :1], y[:1], keys))
    assert set(np.flatnonzero(hists.sum(0))) == {1, 2, 3}


def test_rank_histogram_calibrated_is_flat():
    # Truth and members iid from the same distribution: every rank has probability 1/(n+1).
    # Pearson chi-square with n degrees of freedom; reject flatness at significance 0.1%.
    n, d = 9, 20_000
    rng = np.random.default_rng(42)
    hist = np.asarray(
        metrics.rank_histogram(rng.normal(size=(n, d)), rng.normal(size=d))
    )
    assert hist.sum() == d
    assert scipy.stats.chisquare(hist).pvalue > 1e-3
    # Discrete data (many ties): flat only with random tie-breaking.
    ens = rng.integers(0, 4, size=(n, d)).astype(np.float32)
    truth = rng.integers(0, 4, size=d).astype(np.float32)
    hist = np.asarray(metrics.rank_histogram(ens, truth, jax.random.key(7)))
    assert hist.sum() == d
    assert scipy.stats.chisquare(hist).pvalue > 1e-3
    assert scipy.stats.chisquare(np.asarray(metrics.rank_histogram(ens, truth))).pvalue < 1e-3


@pytest.fixture
def cycles():
    """Four cycles of a 5 x 6 lat-lon field: particles, log-weights, truth, the ensemble's
    moments in float64, and latitude weights zero on a mask (the flat area weights)."""
    rng = np.random.default_rng(5)
    t, n, lat, lon = 4, 7, 5, 6
    ens = (rng.normal(size=(t, n, lat * lon)) * 1.3 + 0.4).astype(np.float32)
    truth = rng.normal(size=(t, lat * lon)).astype(np.float32)
    lw = rng.normal(size=(t, n))
    lw = (lw - np.log(np.exp(lw).sum(1, keepdims=True))).astype(np.float32)
    w = np.exp(lw.astype(float))
    w = w / w.sum(1, keepdims=True)
    mean = np.einsum("tn,tnd->td", w, ens.astype(float))
    var = np.einsum("tn,tnd->td", w, (ens - mean[:, None]) ** 2) / (1 - (w**2).sum(1))[:, None]
    lats = np.linspace(-80.0, 80.0, lat)
    mask = rng.uniform(size=lat * lon) > 0.3
    area = np.repeat(np.cos(np.deg2rad(lats)), lon) * mask
    return ens, lw, truth, w, mean, var, area


def test_area_scores_against_numpy(cycles):
    ens, lw, truth, w, mean, var, area = cycles
    a = area / area.sum()
    crps = np.stack([_np_crps(ens[k], truth[k], w[k]) for k in range(len(truth))])
    expected = {
        "skill": np.sqrt(((mean - truth) ** 2 * a).sum(1)),
        "spread": np.sqrt((var * a).sum(1)),
        "crps": (crps * a).sum(1),
    }
    out = metrics.area_scores(ens, lw, truth, area)
    assert set(out) == {"skill", "spread", "crps"}
    for k, v in expected.items():
        assert out[k].shape == (len(truth),)
        np.testing.assert_allclose(out[k], v, rtol=RTOL, atol=ATOL, err_msg=k)
    moments = jax.jit(metrics.area_scores)(mean.astype(np.float32), var.astype(np.float32), truth, area)
    assert set(moments) == {"skill", "spread"}  # no CRPS without the ensemble
    for k in moments:
        np.testing.assert_allclose(moments[k], expected[k], rtol=RTOL, atol=ATOL, err_msg=k)
    with pytest.raises((ValueError, TypeError)):  # TypeError from the tests' shape checker
        metrics.area_scores(ens[0, 0], lw[0], truth[0])


def test_uniform_area_scores_equal_unweighted(cycles):
    ens, lw, truth, w, mean, var, _ = cycles
    for area in (None, np.full(truth.shape[1], 3.0)):
        out = jax.jit(metrics.area_scores)(ens, lw, truth, area)
        for k in range(len(truth)):
            wk = np.exp(lw[k])
            np.testing.assert_allclose(out["skill"][k], metrics.skill(ens[k], truth[k], wk), rtol=RTOL)
            np.testing.assert_allclose(out["spread"][k], metrics.spread(ens[k], wk), rtol=RTOL)
            np.testing.assert_allclose(out["crps"][k], metrics.crps(ens[k], truth[k], wk), rtol=RTOL)


def test_masked_components_do_not_count(cycles):
    # A zero area weight drops the component whatever its values: NaN and inf allowed there
    # (e.g. SST over land).  The scores equal those of the other components alone.
    ens, lw, truth, _, mean, var, area = cycles
    keep = area != 0
    bad = ens.copy(), truth.copy(), mean.copy(), var.copy()
    for x, value in zip(bad, (np.nan, np.inf, np.nan, -np.inf)):
        x[..., ~keep] = value
    b_ens, b_truth, b_mean, b_var = bad
    for args, alone_args, bad_args in (
        ((ens, lw), (ens[..., keep], lw), (b_ens, lw)),
        ((mean, var), (mean[:, keep], var[:, keep]), (b_mean, b_var)),
    ):
        out = metrics.area_scores(*args, truth, area)
        alone = metrics.area_scores(*alone_args, truth[:, keep], area[keep])
        masked = jax.jit(metrics.area_scores)(*bad_args, b_truth, area)
        for k in out:
            assert np.all(np.isfinite(masked[k])), k
            np.testing.assert_allclose(masked[k], out[k], rtol=RTOL, err_msg=k)
            np.testing.assert_allclose(alone[k], out[k], rtol=RTOL, err_msg=k)
    assert np.all(np.isnan(metrics.area_scores(mean, var, truth, 0 * area)["skill"]))  # nothing left


def test_area_scores_accumulate_in_the_area_dtype(x64, cycles):
    # float32 ensembles, float64 area weights under x64: float64 errors and sums, as the
    # GenCast job's field scores are computed.
    ens, lw, truth, w, mean, var, area = cycles
    out = metrics.area_scores(mean.astype(np.float32), var.astype(np.float32), truth, area)
    assert out["skill"].dtype == jnp.float64
    m32 = mean.astype(np.float32).astype(float)
    expected = np.sqrt(((m32 - truth) ** 2 * area).sum(1) / area.sum())
    np.testing.assert_allclose(out["skill"], expected, rtol=1e-13)
    assert metrics.area_scores(ens, lw, truth, area.astype(np.float32))["crps"].dtype == jnp.float32


def test_transition_scores_of_a_calibrated_ensemble():
    """Members and the 'true draw' from the same N(m, s^2): spread = s, spread/skill = 1,
    mean_bias ~ 0 and the fair CRPS has expectation s / sqrt(pi).  64 starts x 50
    components x 32 members: the relative standard errors are below 0.5% (spread, CRPS) and
    2% (skill); tolerances 3% and 6%.  The fair CRPS equals the brute-force pair sum."""
    import assimilax as ax

    s, starts, n, d = 0.7, 64, 32, 50
    k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
    m = jax.random.normal(k1, (starts, d))
    ens = m[:, None] + s * jax.random.normal(k2, (starts, n, d))
    y = m + s * jax.random.normal(k3, (starts, d))
    out = ax.metrics.transition_scores(ens, m, y)
    np.testing.assert_allclose(out["spread"], s, rtol=0.03)
    np.testing.assert_allclose(out["spread_skill"], 1.0, rtol=0.06)
    np.testing.assert_allclose(out["crps"], s / np.sqrt(np.pi), rtol=0.03)
    np.testing.assert_allclose(out["mean_rmse"], s / np.sqrt(n), rtol=0.05)  # only Monte Carlo error
    assert out["mean_bias"] < 0.3 * out["mean_rmse"]
    e, t = np.asarray(ens[0]), np.asarray(y[0])
    brute = np.abs(e - t).mean(0) - np.abs(e[:, None] - e[None]).sum((0, 1)) / (2 * n * (n - 1))
    np.testing.assert_allclose(ax.metrics.transition_scores(ens[:1], m[:1], y[:1])["crps"], brute.mean(), rtol=1e-5)
    biased = ax.metrics.transition_scores(ens + 0.5, m, y)
    assert biased["mean_bias"] > 0.45 and biased["spread_skill"] < 0.9
