"""The block (localised) FA-APF: first-stage weights and resampling per block of the state.

The FA-APF's first-stage weights ``lambda_i ∝ W_i p^(y | h_i)^alpha`` multiply the
likelihoods of all observations, so their ESS collapses as the number of observations
grows.  Here the state components are partitioned into blocks ``b`` (a
[`assimilax.BlockLocalisation`][assimilax.localisation.BlockLocalisation]) and, per block,

1. ``log lambda_{b,i} = log W_i + alpha_b log p^(y_b | h_i)`` with the observations
   ``y_b`` of that block only and ``alpha_b`` from the tempering rule;
2. ancestors ``a_{b,i}`` are resampled from ``lambda_b``;
3. the histories are glued: component ``c`` of the new history ``i`` is component ``c``
   of the history ``h_{a_{b(c), i}}``;

then every glued history is propagated with the guided sampler given all of ``y`` (the
proposal is the same as the FA-APF's).  This is the block particle filter of Rebeschini &
van Handel (2015) with the FA-APF's adapted proposal.  It trades a bias at the block
borders for weights that do not degenerate with the dimension.  With one block it is
[`assimilax.FAAPF`][assimilax.filters.fa_apf.FAAPF]; when the model and the observations decouple across the blocks it
is exact blockwise, which is how it is tested against the Kalman filter.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ..emulators import AbstractEmulator
from ..guidance import MMPS, AbstractGuidance
from ..localisation import BlockLocalisation
from ..observations import ObservationModel
from ..resampling import (
    AbstractResampler,
    Systematic,
    check_weights,
    effective_sample_size,
    normalise,
)
from ..sampling import Sampler
from ..sharding import glue_histories as glue_histories, glue_particles, replicate
from ..tempering import AbstractTempering, ESSBandTempering
from ..weighting import AbstractWeighting, DiracWeights
from ..errors import InvalidArgument
from .base import AbstractFilter, Diagnostics, FilterState, check_step
from .fa_apf import guided_proposals, predictive_means


class BlockFAAPF(AbstractFilter):
    """FA-APF with first-stage weights, tempering and resampling per block.

    **Arguments:**

    - `emulator`, `observation`, `sampler`, `guidance`, `weighting`, `tempering`,
      `resampler`: as for [`assimilax.FAAPF`][assimilax.filters.fa_apf.FAAPF]; the weighting rule is applied per block
      ([`assimilax.AbstractWeighting.blocks`][assimilax.weighting.AbstractWeighting.blocks]) and the tempering per block.
    - `localisation`: the [`assimilax.BlockLocalisation`][assimilax.localisation.BlockLocalisation] of the state and observations.
    - `coupled`: resample all blocks with the same random numbers.  With systematic
      resampling, blocks whose weights agree then pick the same ancestors, so fewer
      particles are glued from different histories.  Default: independent per block.

    **Diagnostics:** `ess` and `alpha` of the worst block (smallest ESS, smallest alpha);
    `log_likelihood` is ``sum_b log sum_i W_i p^(y_b | h_i)`` (exact when the blocks are
    independent).
    """

    emulator: AbstractEmulator
    observation: ObservationModel
    sampler: Sampler
    localisation: BlockLocalisation
    guidance: AbstractGuidance = MMPS()
    weighting: AbstractWeighting = DiracWeights()
    tempering: AbstractTempering = ESSBandTempering()
    resampler: AbstractResampler = Systematic()
    coupled: bool = False

    def __check_init__(self):
        loc = self.localisation
        if loc.state_size != self.emulator.state_size:
            raise InvalidArgument(
                f"BlockFAAPF: the localisation has {loc.state_size} state components, "
                f"the emulator's state has {self.emulator.state_size}."
            )
        if loc.obs_size != self.observation.obs_size:
            raise InvalidArgument(
                f"BlockFAAPF: the localisation assigns {loc.obs_size} observations, the "
                f"observation model returns {self.observation.obs_size}."
            )

    def first_stage(
        self,
        state: FilterState,
        y: Float[Array, " p"],
        key: PRNGKeyArray,
        forcing: PyTree = None,
    ) -> tuple[Int[Array, "b n"], Diagnostics]:
        """Steps 1-2 with the cycle's `key`: each block's ancestors and the diagnostics."""
        check_step(self, state, y, tempering=self.tempering)
        n = state.particles.shape[0]
        loc = self.localisation
        k_mean, k_res, _ = jax.random.split(key, 3)
        mu = predictive_means(self.emulator, self.sampler.sigma_max, k_mean, state.particles, forcing)
        log_g = jax.vmap(
            lambda m: self.weighting.blocks(
                self.observation, y, m, loc.obs_blocks, loc.n_blocks
            )
        )(mu).T  # (b, n)
        log_g = jax.vmap(check_weights)(replicate(log_g))
        prior = normalise(state.log_weights)
        alpha = jax.vmap(lambda g: self.tempering(g, prior))(log_g)
        first_stage = prior[None, :] + alpha[:, None] * log_g
        if self.coupled or loc.n_blocks == 1:
            # One block with its own key is the FA-APF's resampling draw exactly.
            ancestors = jax.vmap(lambda w: self.resampler(k_res, w, n))(first_stage)
        else:
            keys = jax.random.split(k_res, loc.n_blocks)
            ancestors = jax.vmap(lambda k, w: self.resampler(k, w, n))(keys, first_stage)
        ess = jax.vmap(effective_sample_size)(first_stage)
        evidence = jnp.sum(jax.vmap(lambda g: jax.nn.logsumexp(prior + g))(log_g))
        return ancestors, Diagnostics(jnp.min(ess), jnp.min(alpha), evidence)

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
        histories = glue_particles(state.particles, ancestors, self.localisation)
        new = guided_proposals(self, k_prop, histories, y, forcing)
        return eqx.tree_at(lambda s: s.cycle, new, state.cycle + 1), diag
