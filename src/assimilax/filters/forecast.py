"""The unconditional ensemble forecast: the baseline every figure compares with."""

import jax
import jax.numpy as jnp

from ..emulators import AbstractEmulator, push_history
from ..observations import ObservationModel
from ..sampling import Sampler
from ..transitions import forecast_ensemble
from .base import AbstractFilter, Diagnostics, FilterState, check_step


class EnsembleForecast(AbstractFilter):
    """Propagate every particle with the emulator and ignore the observations.

    `log_likelihood` reports ``log (1/n) sum_i p(y | x_i)`` for the forecast ensemble when an
    `observation` model is given (a score of the forecast), NaN when it is None.

    Arguments in the order of every filter: ``EnsembleForecast(emulator, observation,
    sampler)``.
    """

    emulator: AbstractEmulator
    observation: ObservationModel | None
    sampler: Sampler

    def step(self, state, y, key, forcing=None):
        check_step(self, state, y)
        n = state.particles.shape[0]
        x = forecast_ensemble(self.emulator, self.sampler, key, state.particles, forcing)
        particles = jax.vmap(push_history)(state.particles, x)
        if self.observation is None:
            log_like = jnp.full((), jnp.nan, x.dtype)
        else:
            ll = jax.vmap(lambda xi: self.observation.log_likelihood(y, xi))(x)
            log_like = jax.nn.logsumexp(ll) - jnp.log(n)
        new = FilterState(particles, jnp.zeros(n, x.dtype), state.cycle + 1)
        return new, Diagnostics(jnp.asarray(n, x.dtype), jnp.ones((), x.dtype), log_like)
