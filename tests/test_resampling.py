"""Resampling schemes (`assimilax.resampling`): unbiasedness, ranges, degenerate weights, ESS.

Unbiasedness.  A resampler drawing ``n`` ancestors from normalised weights ``w`` must give
particle ``i`` an expected number of copies ``n w_i``.  We draw ``R`` independent
resamplings with fixed keys and compare the mean count ``c_i`` with ``n w_i``.  The standard
error of ``c_i`` is estimated from the repetitions themselves, ``SE_i = sd_r(c_i^r) /
sqrt(R)`` (per scheme: the schemes have very different count variances, multinomial the
largest, systematic the smallest), and we assert ``|c_i - n w_i| < K SE_i + EPS``.  With
``K = 5`` a correct scheme fails one of the ``4 x 2 x M = 160`` comparisons with probability
below ``160 x 5.7e-7 ~ 1e-4`` (the count averages over R = 4000 repetitions are close to
normal); ``EPS = 1e-3`` absorbs the float32 rounding of the cumulative weights (about
``n 1e-7`` per count).  The keys are fixed, so the test is deterministic; a negative control
shows the check rejects a biased scheme.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax.resampling import check_weights, normalise

SCHEMES = [ax.Systematic(), ax.Stratified(), ax.Multinomial(), ax.Residual()]
IDS = [type(s).__name__ for s in SCHEMES]
M, R, K, EPS = 20, 4000, 5.0, 1e-3


def _weights():
    # Non-uniform weights with no n w_i an integer (so every scheme's counts are random),
    # spanning two orders of magnitude, and some tiny ones.
    rng = np.random.default_rng(0)
    w = rng.dirichlet(0.7 * np.ones(M))
    w[3] = 1e-5
    return w / w.sum()


def _counts(resampler, log_w, n, key):
    keys = jax.random.split(key, R)

    @jax.jit
    def run(keys):
        idx = jax.vmap(lambda k: resampler(k, log_w, n))(keys)
        counts = jax.vmap(lambda a: jnp.zeros(log_w.shape[0]).at[a].add(1.0))(idx)
        return idx, counts

    idx, counts = run(keys)
    return np.asarray(idx), np.asarray(counts, dtype=np.float64)


def _assert_unbiased(counts, w, n):
    mean = counts.mean(axis=0)
    se = counts.std(axis=0, ddof=1) / np.sqrt(counts.shape[0])
    z = np.abs(mean - n * w) / np.maximum(se, 1e-12)
    assert np.all(np.abs(mean - n * w) < K * se + EPS), f"max |bias|/SE = {z.max():.2f}"


@pytest.mark.parametrize("n", [M, 3 * M + 7], ids=["n=m", "n=3m+7"])
@pytest.mark.parametrize("resampler", SCHEMES, ids=IDS)
def test_unbiased_counts(resampler, n):
    w = _weights()
    log_w = jnp.log(jnp.asarray(w, jnp.float32)) + 3.0  # unnormalised on purpose
    idx, counts = _counts(resampler, log_w, n, jax.random.key(1))
    assert idx.shape == (R, n)
    assert idx.min() >= 0 and idx.max() < M
    np.testing.assert_array_equal(counts.sum(axis=1), n)
    _assert_unbiased(counts, w, n)


def test_unbiasedness_check_rejects_biased_scheme():
    """Negative control: resampling from ``w^2`` (normalised) is biased and must be caught."""

    class Squared(ax.AbstractResampler):
        def __call__(self, key, log_weights, n):
            return ax.Multinomial()(key, 2 * log_weights, n)

    w = _weights()
    _, counts = _counts(Squared(), jnp.log(jnp.asarray(w, jnp.float32)), M, jax.random.key(1))
    with pytest.raises(AssertionError):
        _assert_unbiased(counts, w, M)


def test_low_variance_count_bounds():
    """Systematic resampling gives every particle ``floor(n w_i)`` or ``ceil(n w_i)`` copies;
    residual resampling at least ``floor(n w_i)`` (multinomial guarantees neither)."""
    w = _weights()
    log_w = jnp.log(jnp.asarray(w, jnp.float32))
    nw = M * w
    _, counts = _counts(ax.Systematic(), log_w, M, jax.random.key(2))
    assert np.all(counts >= np.floor(nw)) and np.all(counts <= np.ceil(nw))
    _, counts = _counts(ax.Residual(), log_w, M, jax.random.key(2))
    assert np.all(counts >= np.floor(nw))


@pytest.mark.parametrize("resampler", SCHEMES, ids=IDS)
def test_one_particle_carries_all_weight(resampler):
    log_w = jnp.full((M,), -jnp.inf).at[7].set(0.0)
    for seed in range(5):
        idx = resampler(jax.random.key(seed), log_w, 2 * M)
        np.testing.assert_array_equal(np.asarray(idx), 7)


@pytest.mark.parametrize("resampler", SCHEMES, ids=IDS)
def test_some_minus_inf_weights_never_chosen(resampler):
    log_w = jnp.zeros(M).at[jnp.arange(0, M, 2)].set(-jnp.inf)
    idx, _ = _counts(resampler, log_w, M, jax.random.key(3))
    assert np.all(idx % 2 == 1)


def test_effective_sample_size():
    n = 37
    np.testing.assert_allclose(float(ax.effective_sample_size(jnp.zeros(n))), n, rtol=1e-6)
    # float32 log-weights of size ~100 carry a rounding error of ~1e-5 (their ulp is 7.6e-6).
    np.testing.assert_allclose(float(ax.effective_sample_size(jnp.full(n, 123.4))), n, rtol=3e-5)
    one_hot = jnp.full((n,), -jnp.inf).at[5].set(2.0)
    np.testing.assert_allclose(float(ax.effective_sample_size(one_hot)), 1.0, rtol=1e-6)
    # Two equal weights out of n, the rest zero: ESS = 2.
    two = jnp.full((n,), -jnp.inf).at[jnp.array([1, 9])].set(-4.0)
    np.testing.assert_allclose(float(ax.effective_sample_size(two)), 2.0, rtol=1e-6)
    # A generic case against the definition 1 / sum w^2 (NumPy, float64).
    lw = np.random.default_rng(4).normal(size=n) * 2
    w = np.exp(lw - lw.max())
    w /= w.sum()
    np.testing.assert_allclose(
        float(ax.effective_sample_size(jnp.asarray(lw))), 1 / np.sum(w**2), rtol=1e-5
    )
    np.testing.assert_allclose(np.exp(np.asarray(normalise(jnp.asarray(lw)))), w, rtol=1e-5)


def test_check_weights_raises_on_nan_inside_jit():
    lw = jnp.zeros(8).at[3].set(jnp.nan)
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN"):
        eqx.filter_jit(check_weights)(lw)


def test_check_weights_raises_on_all_minus_inf_inside_jit():
    lw = jnp.full((8,), -jnp.inf)
    with pytest.raises(eqx.EquinoxRuntimeError, match="-inf"):
        eqx.filter_jit(check_weights)(lw)


def test_check_weights_passes_some_minus_inf():
    lw = jnp.zeros(8).at[jnp.array([0, 5])].set(-jnp.inf)
    out = eqx.filter_jit(check_weights)(lw)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(lw))
