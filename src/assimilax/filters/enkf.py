"""The stochastic (perturbed-observation) ensemble Kalman filter, as a baseline.

Burgers, van Leeuwen & Evensen (1998); the formulas are those of DAPPER's ``EnKF('PertObs')``.
Forecast each member with the emulator, inflate the anomalies by `inflation`, then with
``X`` the state anomalies and ``Y`` the anomalies of ``A(x_i)`` (``n - 1`` normalisation):

    K = C_xy (C_yy + R)^{-1},   C_xy = X^T Y / (n-1),   C_yy = Y^T Y / (n-1),
    x_i^a = x_i + K (y + e_i - A(x_i)),   e_i ~ N(0, R).

Missing observations are dropped (identity rows, zero innovation).  Weights stay uniform;
`log_likelihood` is ``log N(y; mean A(x_i), C_yy + R)``.
"""

import jax
import jax.numpy as jnp

from ..emulators import AbstractEmulator, push_history
from ..observations import ObservationModel
from ..sampling import Sampler
from ..transitions import forecast_ensemble
from ..weighting import masked_gaussian_log_pdf
from .. import _checks
from .base import AbstractFilter, Diagnostics, FilterState, check_step


class StochasticEnKF(AbstractFilter):
    """Perturbed-observation EnKF with multiplicative inflation and no localisation.

    `inflation` (a finite number > 0, 1 = none) multiplies the forecast anomalies; the
    ensemble needs at least 2 members (checked when the step is traced).
    """

    emulator: AbstractEmulator
    observation: ObservationModel
    sampler: Sampler
    inflation: float = 1.0

    def __check_init__(self):
        _checks.positive("StochasticEnKF", "inflation", self.inflation)

    def step(self, state, y, key, forcing=None):
        check_step(self, state, y, min_particles=2)
        n = state.particles.shape[0]
        k_prop, k_pert = jax.random.split(key)
        x = forecast_ensemble(self.emulator, self.sampler, k_prop, state.particles, forcing)
        mean = x.mean(axis=0)
        x = mean + self.inflation * (x - mean)
        ax = jax.vmap(self.observation.operator)(x)
        xa, ya = x - mean, ax - ax.mean(axis=0)
        mask = jnp.isfinite(y)
        c_xy = xa.T @ ya / (n - 1)
        c_yy = ya.T @ ya / (n - 1) + self.observation.noise.covariance()
        both = mask[:, None] & mask[None, :]
        c_yy = jnp.where(both, c_yy, jnp.eye(c_yy.shape[0], dtype=c_yy.dtype))
        perturbations = jax.vmap(self.observation.noise.sample)(jax.random.split(k_pert, n))
        innovations = jnp.where(mask, jnp.where(mask, y, 0.0) + perturbations - ax, 0.0)
        x = x + jnp.linalg.solve(c_yy, innovations.T).T @ c_xy.T
        particles = jax.vmap(push_history)(state.particles, x)
        log_like = masked_gaussian_log_pdf(jnp.where(mask, y, 0.0) - ax.mean(axis=0), c_yy, mask)
        new = FilterState(particles, jnp.zeros(n, x.dtype), state.cycle + 1)
        return new, Diagnostics(jnp.asarray(n, x.dtype), jnp.ones((), x.dtype), log_like)
