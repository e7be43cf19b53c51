"""The bootstrap particle filter (Gordon, Salmond & Smith, 1993).

Per observation time: resample when ``ESS < threshold n`` (always by default), propagate
each particle with the emulator, ``x_i ~ p(x | h_{a_i})``, and weight by the likelihood
``log w_i += log p(y | x_i)``.
"""

import jax
import jax.numpy as jnp

from ..emulators import AbstractEmulator, push_history
from ..observations import ObservationModel
from ..resampling import (
    AbstractResampler,
    Systematic,
    check_weights,
    effective_sample_size,
    normalise,
)
from ..sampling import Sampler
from ..sharding import replicate, take_particles
from ..transitions import forecast_ensemble
from .. import _checks
from .base import AbstractFilter, Diagnostics, FilterState, check_step


class BootstrapPF(AbstractFilter):
    """Bootstrap particle filter.

    **Arguments:**

    - `emulator`, `observation`, `sampler`: the model, the observation model, the sampler.
    - `resampler`: default systematic.
    - `resample_threshold`: resample when ``ESS < resample_threshold n``, in ``[0, 1]``
      (1 = always, 0 = never).
    """

    emulator: AbstractEmulator
    observation: ObservationModel
    sampler: Sampler
    resampler: AbstractResampler = Systematic()
    resample_threshold: float = 1.0

    def __check_init__(self):
        _checks.scalar(
            "BootstrapPF", "resample_threshold", self.resample_threshold,
            "a number in [0, 1] (1 = always resample, 0 = never)", lambda v: 0.0 <= v <= 1.0,
        )

    def step(self, state, y, key, forcing=None):
        check_step(self, state, y)
        n = state.particles.shape[0]
        k_res, k_prop = jax.random.split(key)
        prior = normalise(state.log_weights)
        ess = effective_sample_size(prior)
        resample = ess < self.resample_threshold * n + 1e-6 * n
        ancestors = jnp.where(resample, self.resampler(k_res, prior, n), jnp.arange(n))
        prior = jnp.where(resample, -jnp.log(n) * jnp.ones_like(prior), prior)
        histories = take_particles(state.particles, ancestors)
        x = forecast_ensemble(self.emulator, self.sampler, k_prop, histories, forcing)
        log_lik = jax.vmap(lambda xi: self.observation.log_likelihood(y, xi))(x)
        log_weights = check_weights(prior + replicate(log_lik))
        particles = jax.vmap(push_history)(histories, x)
        new = FilterState(particles, normalise(log_weights), state.cycle + 1)
        diag = Diagnostics(
            effective_sample_size(log_weights),
            jnp.ones((), x.dtype),
            jax.nn.logsumexp(log_weights),
        )
        return new, diag
