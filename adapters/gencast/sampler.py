"""GenCast's own sampler and its spherical-harmonic noise.

**Sampler.**  The reference's ``dpm_solver_plus_plus_2s.Sampler`` is, step for step, the
core's [`assimilax.Sampler`][assimilax.sampling.Sampler] with

- the levels ``sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``,
  ``i = 0..n-1`` (``rho_inverse_cdf`` at quantiles 1 -> 0, i.e. [`assimilax.EDMSchedule`][assimilax.schedules.EDMSchedule]),
  then 0;
- ``x = sigma_0 eps``; at each level churn ``sigma_hat = sigma (1 + gamma)``,
  ``gamma = min(S_churn / n, sqrt(2) - 1)`` for ``sigma`` in ``[churn_min, churn_max]``,
  ``x += sqrt(sigma_hat^2 - sigma^2) S_noise eps`` ([`assimilax.Churn`][assimilax.sampling.Churn]);
- a DPM-Solver++(2S) step from ``sigma_hat`` to the next level (geometric midpoint,
  [`assimilax.DPMSolverPP2S`][assimilax.solvers.DPMSolverPP2S]); the last step, to level 0, returns ``D(x, sigma_hat)``.

Every ``eps`` is the spherical noise below.  One difference: the core applies no churn before
the final denoising step, the reference does when ``min_noise_level >= churn_min``.  Neither
published configuration (``0.03 < 0.75``) reaches it; [`gencast_sampler`][] refuses a
configuration that would.

**Noise.**  ``samplers_utils.spherical_white_noise_like``: an isotropic Gaussian field on
the sphere whose power is flat over the total wavenumbers ``l = 0..L-1``, ``L = n_lon // 2``,
with unit total power.  It is synthesised from real, orthonormal spherical harmonics:
``f(lat, lon) = sum_{l < L} sum_{|m| <= l} sqrt(4 pi / (L (2 l + 1))) xi_lm Y_lm(lat, lon)``,
``xi_lm ~ N(0, 1)``.  By the addition theorem its covariance between two points at angle
``gamma`` is ``(1/L) sum_{l < L} P_l(cos gamma)``: variance exactly one at every grid point.
The reference evaluates the same synthesis with the ``dinosaur`` package; this module computes
the normalised associated Legendre functions by the standard three-term recurrences
(float64) on any latitudes and sums the longitude harmonics directly, so any lat-lon grid
works (the reference requires an equiangular or Gaussian grid with ``n_lon = 2 n_lat`` or
``2 (n_lat - 1)``, the 1 and 0.25 degree ERA5 grids being of the latter kind).
Independent fields are drawn per channel (variable and level), as in the reference.
Memory: the Legendre table holds ``n_lat L^2 / 2`` numbers (6 M for 1 degree, 187 M for
0.25 degree in float32).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

import assimilax as ax

from .config import SamplerConfig


def gencast_sampler(config: SamplerConfig = SamplerConfig()) -> ax.Sampler:
    """The core sampler that runs GenCast's DPM-Solver++(2S) with churn for `config`."""
    churn = None
    if config.stochastic_churn_rate > 0:
        if config.churn_min_noise_level <= config.min_noise_level <= config.churn_max_noise_level:
            raise ValueError(
                "This sampler configuration churns at the last level before denoising, which the "
                "core Sampler does not do (min_noise_level within the churn range)."
            )
        churn = ax.Churn(
            churn=float(config.stochastic_churn_rate),
            sigma_min=float(config.churn_min_noise_level),
            sigma_max=float(config.churn_max_noise_level),
            noise_inflation=float(config.noise_level_inflation_factor),
        )
    return ax.Sampler(
        schedule=ax.EDMSchedule(
            float(config.min_noise_level), float(config.max_noise_level), float(config.rho)
        ),
        n_levels=int(config.num_noise_levels),
        solver=ax.DPMSolverPP2S(),
        churn=churn,
    )


def legendre_table(lat_degrees: ArrayLike, n_wavenumbers: int) -> np.ndarray:
    """``P[lat, l, m]``: orthonormal associated Legendre functions, ``l, m < L``.

    ``Y_lm = P[., l, |m|] * (1, sqrt(2) cos(m lon), sqrt(2) sin(|m| lon))`` for ``m = 0``,
    ``m > 0``, ``m < 0`` is orthonormal on the unit sphere; zero for ``m > l``.
    """
    x = np.sin(np.deg2rad(np.asarray(lat_degrees, np.float64)))
    s = np.sqrt(np.maximum(1.0 - x**2, 0.0))
    big_l = int(n_wavenumbers)
    p = np.zeros((x.size, big_l, big_l))
    pmm = np.full(x.size, math.sqrt(1.0 / (4 * math.pi)))
    for m in range(big_l):
        if m > 0:
            pmm = math.sqrt((2 * m + 1) / (2 * m)) * s * pmm
        p[:, m, m] = pmm
        if m + 1 < big_l:
            p[:, m + 1, m] = math.sqrt(2 * m + 3) * x * pmm
        for l in range(m + 2, big_l):
            a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
            b = math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
            p[:, l, m] = a * (x * p[:, l - 1, m] - b * p[:, l - 2, m])
    p[:, :, 1:] *= math.sqrt(2.0)
    return p


class SphericalNoise(eqx.Module):
    """Unit-variance isotropic noise on a lat-lon grid with a flat spectrum (see module doc).

    ``noise(key, channels)`` returns ``(channels, n_lat, n_lon)``.
    """

    legendre: Float[Array, "lat l m"]
    cos: Float[Array, "lon m"]
    sin: Float[Array, "lon m"]
    n_wavenumbers: int = eqx.field(static=True)

    def __init__(self, lat: ArrayLike, lon: ArrayLike, n_wavenumbers: int | None = None):
        lon = np.asarray(lon, np.float64)
        big_l = lon.size // 2 if n_wavenumbers is None else int(n_wavenumbers)
        if big_l < 1:
            raise ValueError("SphericalNoise needs at least two longitudes.")
        m = np.arange(big_l)
        phase = np.deg2rad(lon)[:, None] * m[None, :]
        # Power 1/L per total wavenumber l, shared by its 2l + 1 coefficients.
        l = np.arange(big_l)
        coef = np.sqrt(4 * np.pi / (big_l * (2 * l + 1)))
        self.legendre = jnp.asarray(legendre_table(lat, big_l) * coef[None, :, None], jnp.float32)
        self.cos = jnp.asarray(np.cos(phase), jnp.float32)
        self.sin = jnp.asarray(np.sin(phase), jnp.float32)
        self.n_wavenumbers = big_l

    def __call__(self, key: PRNGKeyArray, channels: int) -> Float[Array, "c lat lon"]:
        big_l = self.n_wavenumbers
        k_cos, k_sin = jax.random.split(key)
        xi_cos = jax.random.normal(k_cos, (channels, big_l, big_l))
        xi_sin = jax.random.normal(k_sin, (channels, big_l, big_l)).at[:, :, 0].set(0.0)
        a = jnp.einsum("alm,clm->cam", self.legendre, xi_cos)  # zero above the diagonal
        b = jnp.einsum("alm,clm->cam", self.legendre, xi_sin)
        return jnp.einsum("cam,om->cao", a, self.cos) + jnp.einsum("cam,om->cao", b, self.sin)

    def covariance(self, lat_index: int, lon_index: int) -> Float[Array, "lat lon"]:
        """Exact covariance of the field with grid point ``(lat_index, lon_index)``."""
        p0 = self.legendre[lat_index]  # (l, m)
        c0, s0 = self.cos[lon_index], self.sin[lon_index]
        cc = jnp.einsum("alm,lm,om,m->ao", self.legendre, p0, self.cos, c0)
        ss = jnp.einsum("alm,lm,om,m->ao", self.legendre, p0, self.sin, s0)
        return cc + ss
