"""The fully-adapted auxiliary particle filter with inflation (FA-APF).

The reference method of Savary, Rozet & Louppe (2025).  Per observation time ``k+1``:

1. mean dynamics ``mu_i ~= E[x[k+1] | h_i]`` from one denoiser call at the top noise level
   ([`assimilax.predictive_mean`][assimilax.emulators.predictive_mean]);
2. first-stage weights ``log lambda_i = log W_i + alpha log p^(y | h_i)`` with a weighting
   rule (Dirac at ``mu_i`` by default) and the tempering ``alpha`` chosen to put the ESS in a
   band (inflation ``R / alpha``);
3. resample ancestors ``a_i`` from ``lambda``;
4. propagate ``x_i ~ p(x | h_{a_i}, y)`` with the guided sampler (un-inflated ``R``); the
   weights are then uniform (fully adapted).

With an exact emulator, the Gaussian-predictive weights, no tempering and exact MMPS
guidance this is the fully-adapted (optimal-proposal) auxiliary particle filter; on a
linear-Gaussian model it converges to the Kalman filter.  The reported
``log_likelihood`` is the first-stage estimate ``log sum_i W_i p^(y | h_i)``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ..emulators import AbstractEmulator, predictive_mean, push_history
from ..guidance import MMPS, AbstractGuidance
from ..observations import ObservationModel
from ..resampling import (
    AbstractResampler,
    Systematic,
    check_weights,
    effective_sample_size,
    normalise,
)
from ..sampling import Sampler
from ..sharding import map_particles, replicate, take_particles
from ..tempering import AbstractTempering, ESSBandTempering
from ..transitions import sample_transition
from ..weighting import AbstractWeighting, DiracWeights
from .base import AbstractFilter, Diagnostics, FilterState, check_step


def predictive_means(
    emulator: AbstractEmulator,
    sigma_max: float,
    key: PRNGKeyArray,
    particles: Float[Array, "n m d"],
    forcing: PyTree = None,
) -> Float[Array, "n d"]:
    """``mu_i ~= E[x[k+1] | h_i]`` for every particle: step 1 of the FA-APF."""
    n = particles.shape[0]
    return map_particles(
        lambda k, h: predictive_mean(emulator, k, h, forcing, sigma_max),
        jax.random.split(key, n),
        particles,
    )


def guided_proposals(
    filt: AbstractFilter,
    key: PRNGKeyArray,
    histories: Float[Array, "n m d"],
    y: Float[Array, " p"],
    forcing: PyTree = None,
) -> FilterState:
    """``x_i ~ p(x | h_i, y)`` for every (resampled) history, equally weighted: step 4.

    `filt` supplies ``emulator``, ``sampler``, ``guidance`` and ``observation``.
    """
    n = histories.shape[0]
    x = map_particles(
        lambda k, h: sample_transition(
            filt.emulator, filt.sampler, k, h, forcing, filt.guidance, filt.observation, y
        ),
        jax.random.split(key, n),
        histories,
    )
    particles = jax.vmap(push_history)(histories, x)
    return FilterState(particles, jnp.zeros(n, x.dtype), jnp.zeros((), jnp.int32))


class FAAPF(AbstractFilter):
    """Fully-adapted auxiliary particle filter with tempering inflation.

    **Arguments:**

    - `emulator`: any [`assimilax.AbstractEmulator`][assimilax.emulators.AbstractEmulator].
    - `observation`: the [`assimilax.ObservationModel`][assimilax.observations.ObservationModel] (operator and noise).
    - `sampler`: the [`assimilax.Sampler`][assimilax.sampling.Sampler] used for the guided proposals; its top level
      ``sigma_max`` is also where the mean dynamics are read.
    - `guidance`: the likelihood-score rule of the proposal (default MMPS).
    - `weighting`: the first-stage rule (default Dirac at the predictive mean).
    - `tempering`: the inflation rule (default ESS band 50-60 of 256).
    - `resampler`: default systematic.
    """

    emulator: AbstractEmulator
    observation: ObservationModel
    sampler: Sampler
    guidance: AbstractGuidance = MMPS()
    weighting: AbstractWeighting = DiracWeights()
    tempering: AbstractTempering = ESSBandTempering()
    resampler: AbstractResampler = Systematic()

    def first_stage(
        self,
        state: FilterState,
        y: Float[Array, " p"],
        key: PRNGKeyArray,
        forcing: PyTree = None,
    ) -> tuple[Int[Array, " n"], Diagnostics]:
        """Steps 1-3 of a cycle with the cycle's `key`: the ancestors and the diagnostics."""
        check_step(self, state, y, tempering=self.tempering)
        n = state.particles.shape[0]
        k_mean, k_res, _ = jax.random.split(key, 3)
        mu = predictive_means(self.emulator, self.sampler.sigma_max, k_mean, state.particles, forcing)
        log_g = jax.vmap(lambda m: self.weighting(self.observation, y, m))(mu)
        prior = normalise(state.log_weights)
        log_g = check_weights(replicate(log_g))
        alpha = self.tempering(log_g, prior)
        first_stage = prior + alpha * log_g
        ancestors = self.resampler(k_res, first_stage, n)
        diag = Diagnostics(
            effective_sample_size(first_stage), alpha, jax.nn.logsumexp(prior + log_g)
        )
        return ancestors, diag

    def step(
        self,
        state: FilterState,
        y: Float[Array, " p"],
        key: PRNGKeyArray,
        forcing: PyTree = None,
    ) -> tuple[FilterState, Diagnostics]:
        check_step(self, state, y, tempering=self.tempering)
        ancestors, diag = self.first_stage(state, y, key, forcing)
        k_prop = jax.random.split(key, 3)[2]
        new = guided_proposals(self, k_prop, take_particles(state.particles, ancestors), y, forcing)
        return eqx.tree_at(lambda s: s.cycle, new, state.cycle + 1), diag
