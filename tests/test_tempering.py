"""Tempering (`assimilax.tempering`): the ESS-band bisection on ``log alpha``.

These checks are deterministic (no Monte Carlo): the ESS of the tempered weights
``log W_i + alpha log g_i`` is recomputed in NumPy float64 from the returned ``alpha`` and
must lie in the band ``[min_fraction n, max_fraction n]``.  The only slack is the float32
rounding of the ESS computed by the library (relative ~1e-6, i.e. < 1e-3 particles for
n = 256), allowed as ``ESS_TOL``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax

N = 256
ESS_TOL = 1e-2  # particles; float32 rounding of the library's ESS is ~1e-3 at n = 256


def _ess(log_w):
    lw = np.asarray(log_w, np.float64)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    return 1.0 / np.sum(w**2)


def _peaked(scale, seed=0, n=N):
    """Peaked log-likelihoods ``-scale z_i^2 / 2``, ``z ~ N(0, 3^2)``: the expected untempered
    ESS fraction is ``sqrt(1 + 36 scale) / (1 + 18 scale)``, 0.15 at scale 10, 1e-4 at 1e8."""
    z = 3.0 * np.random.default_rng(seed).normal(size=n)
    return jnp.asarray(-0.5 * scale * z**2, jnp.float32)


def _assert_in_band(tempering, log_g, log_prior, alpha):
    n = log_g.shape[0]
    e = _ess(np.asarray(log_prior, np.float64) + alpha * np.asarray(log_g, np.float64))
    lo, hi = tempering.min_fraction * n, tempering.max_fraction * n
    assert lo - ESS_TOL <= e <= hi + ESS_TOL, (alpha, e, lo, hi)


@pytest.mark.parametrize("scale", [1e1, 1e2, 1e4, 1e6, 1e8])
def test_band_hit_on_peaked_likelihoods(scale):
    tempering = ax.ESSBandTempering()
    log_g = _peaked(scale)
    uniform = jnp.full((N,), -jnp.log(N))
    assert _ess(log_g) < tempering.min_fraction * N  # tempering is needed
    alpha = float(tempering(log_g, uniform))
    assert 0.0 < alpha < 1.0
    _assert_in_band(tempering, log_g, uniform, alpha)


@pytest.mark.parametrize("band", [(0.1, 0.12), (0.5, 0.55), (0.9, 0.95)])
def test_band_hit_for_other_bands(band):
    tempering = ax.ESSBandTempering(*band)
    log_g = _peaked(1e3, seed=1)
    alpha = float(tempering(log_g, jnp.zeros(N)))
    _assert_in_band(tempering, log_g, jnp.zeros(N), alpha)


def test_non_uniform_prior_weights():
    tempering = ax.ESSBandTempering()
    rng = np.random.default_rng(2)
    log_prior = jnp.asarray(0.5 * rng.normal(size=N), jnp.float32)  # ESS ~ 0.78 n
    assert _ess(log_prior) > tempering.max_fraction * N
    for scale in [1e1, 1e3, 1e6]:
        log_g = _peaked(scale, seed=3)
        alpha = float(tempering(log_g, log_prior))
        assert 0.0 < alpha < 1.0
        _assert_in_band(tempering, log_g, log_prior, alpha)
        # The prior weights matter: ignoring them gives a different exponent.
        assert alpha != float(tempering(log_g, jnp.zeros(N)))


def test_alpha_one_when_untempered_ess_above_band_minimum():
    tempering = ax.ESSBandTempering()
    # Flat likelihoods: ESS ~ n, above the band maximum -> no inflation.
    flat = _peaked(1e-3)
    assert _ess(flat) > tempering.max_fraction * N
    assert float(tempering(flat, jnp.zeros(N))) == 1.0
    # Untempered ESS between the band minimum and maximum -> still alpha = 1.
    log_g = _peaked(1e3)
    inside = float(tempering(log_g, jnp.zeros(N)))  # an alpha giving ESS in the band
    scaled = inside * log_g
    assert tempering.min_fraction * N <= _ess(scaled) + ESS_TOL
    assert float(tempering(scaled * (1 - 1e-3), jnp.zeros(N))) == 1.0


def test_jit_compatible():
    tempering = ax.ESSBandTempering()
    log_g = _peaked(1e4)
    uniform = jnp.zeros(N)
    eager = tempering(log_g, uniform)
    jitted = eqx.filter_jit(tempering)(log_g, uniform)
    np.testing.assert_allclose(float(jitted), float(eager), rtol=1e-6)
    # vmapped over several likelihood vectors too (one band search per row).
    rows = jnp.stack([_peaked(s, seed=i) for i, s in enumerate([1e1, 1e3, 1e5])])
    alphas = eqx.filter_jit(lambda r, u: jax.vmap(tempering, in_axes=(0, None))(r, u))(rows, uniform)
    for row, a in zip(rows, np.asarray(alphas)):
        _assert_in_band(tempering, row, uniform, float(a))


def test_no_tempering_returns_one():
    out = ax.NoTempering()(_peaked(1e6), jnp.zeros(N))
    assert out.shape == () and float(out) == 1.0


@pytest.mark.parametrize(
    "band", [(0.0, 0.5), (-0.1, 0.5), (0.6, 0.5), (0.5, 1.2)], ids=["zero", "neg", "inverted", "above-one"]
)
def test_bad_band_raises(band):
    with pytest.raises(ValueError, match="min_fraction"):
        ax.ESSBandTempering(*band)
