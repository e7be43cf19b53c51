"""The local ensemble transform Kalman filter (LETKF) of Hunt, Kostelich & Szunyogh (2007).

The ETKF analysis ([`assimilax.ETKF`][assimilax.filters.etkf.ETKF]) done once per state component ``l`` with the
observations localised around it (R-localisation, Hunt et al. 2007 section 2.3; Greybush
et al. 2011): observation ``j`` enters the analysis at ``l`` with its inverse variance
multiplied by the taper ``rho_lj = rho(dist(s_l, o_j))`` of a
[`assimilax.DistanceLocalisation`][assimilax.geometry.DistanceLocalisation], i.e. the whitened anomalies and innovation are
scaled by ``sqrt(rho_lj)``:

    S_l = S diag(sqrt(rho_l)),   delta_l = diag(sqrt(rho_l)) delta,
    P~_l = [(n - 1) I + S_l S_l^T]^{-1},   w_l = P~_l S_l delta_l,   W_l = [(n - 1) P~_l]^{1/2},
    x_{i,l}^a = mean x_l + X_l^T (w_l + W_l e_i).

With `max_local_obs` = ``K`` each local analysis keeps only the ``K`` observations of
largest taper weight (a static local domain: cost ``O(d n K^2)`` instead of
``O(d n p^2)``; exact whenever at most ``K`` observations have a non-zero weight).
With [`assimilax.NoTaper`][assimilax.geometry.NoTaper] every ``rho`` is 1 and the LETKF is the ETKF.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..emulators import AbstractEmulator, push_history
from ..geometry import DistanceLocalisation, nearest_observations
from ..observations import ObservationModel
from ..sampling import Sampler
from .. import _checks
from .base import AbstractFilter, Diagnostics, FilterState, check_step
from .etkf import forecast_and_observe, innovation_log_likelihood, transform


class LETKF(AbstractFilter):
    """Local ensemble transform Kalman filter with R-localisation by distance.

    **Arguments:**

    - `emulator`: any [`assimilax.AbstractEmulator`][assimilax.emulators.AbstractEmulator] (the forecast model).
    - `observation`: the [`assimilax.ObservationModel`][assimilax.observations.ObservationModel].
    - `sampler`: the [`assimilax.Sampler`][assimilax.sampling.Sampler] of the forecasts.
    - `localisation`: a [`assimilax.DistanceLocalisation`][assimilax.geometry.DistanceLocalisation] for this state and these
      observations (e.g. ``GaspariCohn.from_length_scale(4.0)`` on ``Periodic1D(40)``).
    - `inflation`: the factor on the forecast anomalies (1 = none).
    - `max_local_obs`: keep only this many observations per local analysis (None = all).
    - `batch_size`: local analyses computed at once (None = all, with `jax.vmap`; a number
      bounds the memory to ``batch_size n (n + K)`` for large states).
    """

    emulator: AbstractEmulator
    observation: ObservationModel
    sampler: Sampler
    localisation: DistanceLocalisation
    inflation: float = 1.0
    max_local_obs: int | None = eqx.field(static=True, default=None)
    batch_size: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        _checks.positive("LETKF", "inflation", self.inflation)
        self.localisation.check(self.emulator.state_size, self.observation.obs_size)
        if self.max_local_obs is not None:
            _checks.integer(
                "LETKF", "max_local_obs", self.max_local_obs, 1, self.observation.obs_size,
                why="at most the number of observations",
            )
        _checks.optional_integer("LETKF", "batch_size", self.batch_size, 1)

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

        def local(point, mean_l, anomalies_l):
            rho = jnp.where(mask, self.localisation.weights(point), 0.0)
            s_l, delta_l = s, delta
            if self.max_local_obs is not None:
                rho, idx = nearest_observations(rho, self.max_local_obs)
                s_l, delta_l = s[:, idx], delta[idx]
            root = jnp.sqrt(rho)
            w, u, g, _, _ = transform(s_l * root, delta_l * root)
            return mean_l + w @ anomalies_l + anomalies_l + u @ (g * (u.T @ anomalies_l))

        points = self.localisation.state_points
        if self.batch_size is None:
            x = jax.vmap(local)(points, mean, anomalies.T).T
        else:
            x = jax.lax.map(
                lambda a: local(*a), (points, mean, anomalies.T), batch_size=self.batch_size
            ).T
        _, _, _, sigma, proj = transform(s, delta)
        log_like = innovation_log_likelihood(self.observation.noise, mask, delta, sigma, proj, n)
        particles = jax.vmap(push_history)(state.particles, x)
        new = FilterState(particles, jnp.zeros(n, x.dtype), state.cycle + 1)
        return new, Diagnostics(jnp.asarray(n, x.dtype), jnp.ones((), x.dtype), log_like)
