"""The ensemble transform Kalman filter (ETKF), in the formulation of Hunt, Kostelich &
Szunyogh (2007, "Efficient data assimilation for spatiotemporal chaos: a local ensemble
transform Kalman filter", Physica D 230), without localisation.

Forecast each member with the emulator, ``x_i ~ p(x | h_i)``, inflate the anomalies by
`inflation` (multiplicative, on the forecast), then with ``X`` the ``(n, d)`` state
anomalies, ``Y`` the ``(n, p)`` anomalies of ``A(x_i)`` and the whitened quantities
``S = Y R^{-1/2}``, ``delta = R^{-1/2} (y - mean A(x_i))``:

    P~ = [(n - 1) I + S S^T]^{-1},     w = P~ S delta,     W = [(n - 1) P~]^{1/2},
    x_i^a = mean x + X^T (w + W e_i).

``W`` is the symmetric square root, which keeps the analysis mean at ``mean x + X^T w``.
With the thin SVD ``S = U Sigma V^T`` (cost ``O(n k^2)``, ``k = min(n, p)``):
``w = U diag(sigma / (n - 1 + sigma^2)) V^T delta`` and
``W = I + U diag(sqrt((n - 1) / (n - 1 + sigma^2)) - 1) U^T``.

Missing (NaN) observations are dropped (their whitened rows and innovations set to zero).
Weights stay uniform; `log_likelihood` is ``log N(y; mean A(x_i), C_yy + R)`` with
``C_yy = Y^T Y / (n - 1)``, from the same SVD.  The ETKF is exact for a linear-Gaussian
model as ``n -> inf`` (it is then the Kalman filter).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray, PyTree, Scalar

from ..emulators import AbstractEmulator, push_history
from ..observations import AbstractObservationNoise, DiagonalGaussianNoise, ObservationModel
from ..sampling import Sampler
from ..transitions import forecast_ensemble
from .. import _checks
from .base import AbstractFilter, Diagnostics, FilterState, check_step


def whiten(
    noise: AbstractObservationNoise,
    anomalies: Float[Array, "n p"],
    innovation: Float[Array, " p"],
    mask: Bool[Array, " p"],
) -> tuple[Float[Array, "n p"], Float[Array, " p"]]:
    """``S = Y R^{-1/2}`` and ``delta = R^{-1/2} (y - mean A(x))`` over the observed entries.

    ``R^{1/2}`` is the noise standard deviation for diagonal noise, the lower Cholesky
    factor of the observed block of ``R`` otherwise.  Missing entries are zero.
    """
    if isinstance(noise, DiagonalGaussianNoise):
        s, delta = anomalies / noise.std, innovation / noise.std
    else:
        cov = noise.covariance()
        both = mask[:, None] & mask[None, :]
        cov = jnp.where(both, cov, jnp.eye(cov.shape[0], dtype=cov.dtype))
        chol = jnp.linalg.cholesky(cov)
        solve = lambda v: jax.scipy.linalg.solve_triangular(chol, v, lower=True)  # noqa: E731
        s, delta = solve(anomalies.T).T, solve(innovation)
    return jnp.where(mask, s, 0.0), jnp.where(mask, delta, 0.0)


def transform(
    s: Float[Array, "n k"], delta: Float[Array, " k"]
) -> tuple[Float[Array, " n"], Float[Array, "n r"], Float[Array, " r"], Float[Array, " r"], Float[Array, " r"]]:
    """The ETKF's ensemble-space analysis from the whitened anomalies `s` and innovation.

    Returns ``w`` (the mean update), ``U`` and ``g = sqrt((n-1)/(n-1+sigma^2)) - 1`` (so
    that ``W = I + U diag(g) U^T``), and the singular values ``sigma`` with the
    projections ``V^T delta`` (for the evidence).
    """
    n = s.shape[0]
    u, sigma, vt = jnp.linalg.svd(s, full_matrices=False)
    proj = vt @ delta
    w = u @ (sigma / (n - 1 + sigma**2) * proj)
    g = jnp.sqrt((n - 1) / (n - 1 + sigma**2)) - 1.0
    return w, u, g, sigma, proj


def apply_transform(
    mean: Float[Array, " d"],
    anomalies: Float[Array, "n d"],
    w: Float[Array, " n"],
    u: Float[Array, "n r"],
    g: Float[Array, " r"],
) -> Float[Array, "n d"]:
    """``x_i^a = mean + X^T (w + W e_i)`` with ``W = I + U diag(g) U^T``."""
    return mean + w @ anomalies + anomalies + u @ (g[:, None] * (u.T @ anomalies))


def innovation_log_likelihood(
    noise: AbstractObservationNoise,
    mask: Bool[Array, " p"],
    delta: Float[Array, " k"],
    sigma: Float[Array, " r"],
    proj: Float[Array, " r"],
    n: int,
) -> Scalar:
    """``log N(y; mean A(x), C_yy + R)`` with ``C_yy + R = R^{1/2} (I + S^T S/(n-1)) R^{T/2}``."""
    ratio = sigma**2 / (n - 1)
    quad = delta @ delta - jnp.sum(ratio / (1 + ratio) * proj**2)
    log_det = noise.log_det(mask) + jnp.sum(jnp.log1p(ratio))
    return -0.5 * (quad + log_det + jnp.sum(mask) * jnp.log(2 * jnp.pi))


def forecast_and_observe(
    filt: AbstractFilter,
    state: FilterState,
    y: Float[Array, " p"],
    key: PRNGKeyArray,
    forcing: PyTree,
) -> tuple[Float[Array, " d"], Float[Array, "n d"], Float[Array, "n p"], Float[Array, " p"], Bool[Array, " p"]]:
    """Forecast, inflate, observe and whiten: ``(mean, X, S, delta, mask)``.

    `filt` supplies ``emulator``, ``sampler``, ``observation`` and ``inflation``.
    """
    x = forecast_ensemble(filt.emulator, filt.sampler, key, state.particles, forcing)
    mean = x.mean(axis=0)
    anomalies = filt.inflation * (x - mean)
    hx = jax.vmap(filt.observation.operator)(mean + anomalies)
    mask = jnp.isfinite(y)
    hmean = hx.mean(axis=0)
    s, delta = whiten(filt.observation.noise, hx - hmean, jnp.where(mask, y, 0.0) - hmean, mask)
    return mean, anomalies, s, delta, mask


class ETKF(AbstractFilter):
    """Ensemble transform Kalman filter (Hunt et al. 2007) with multiplicative inflation.

    **Arguments:**

    - `emulator`: any [`assimilax.AbstractEmulator`][assimilax.emulators.AbstractEmulator] (the forecast model).
    - `observation`: the [`assimilax.ObservationModel`][assimilax.observations.ObservationModel]; ``A`` may be nonlinear (the
      ensemble linearises it).
    - `sampler`: the [`assimilax.Sampler`][assimilax.sampling.Sampler] of the forecasts.
    - `inflation`: the factor on the forecast anomalies (1 = none).
    """

    emulator: AbstractEmulator
    observation: ObservationModel
    sampler: Sampler
    inflation: float = 1.0

    def __check_init__(self):
        _checks.positive("ETKF", "inflation", self.inflation)

    def step(
        self,
        state: FilterState,
        y: Float[Array, " p"],
        key: PRNGKeyArray,
        forcing: PyTree = None,
    ) -> tuple[FilterState, Diagnostics]:
        check_step(self, state, y, min_particles=2)
        n = state.particles.shape[0]
        mean, anomalies, s, delta, mask = forecast_and_observe(self, state, y, key, forcing)
        w, u, g, sigma, proj = transform(s, delta)
        x = apply_transform(mean, anomalies, w, u, g)
        log_like = innovation_log_likelihood(self.observation.noise, mask, delta, sigma, proj, n)
        particles = jax.vmap(push_history)(state.particles, x)
        new = FilterState(particles, jnp.zeros(n, x.dtype), state.cycle + 1)
        return new, Diagnostics(jnp.asarray(n, x.dtype), jnp.ones((), x.dtype), log_like)
