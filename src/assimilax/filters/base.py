"""What every filter shares: its state, its per-cycle output, and the validation of inputs.

All filters follow one protocol, ``init(particles) -> state`` and
``step(state, y, key, forcing) -> (state, diagnostics)``, so swapping one for another is
one line and [`assimilax.filter_scan`][assimilax.filters.run.filter_scan] drives them all.
"""

import abc

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, PyTree

from ..emulators import AbstractEmulator
from ..errors import InvalidArgument, InvalidData
from ..observations import ObservationModel
from ..tempering import AbstractTempering


class FilterState(eqx.Module):
    """A weighted particle ensemble of histories.

    - `particles`: ``(n, m, d)``, each particle's history ``h[k]`` oldest first.
    - `log_weights`: ``(n,)``, unnormalised log-weights (zeros after resampling).
    - `cycle`: how many observation times have been assimilated (for per-cycle keys).
    """

    particles: Float[Array, "n m d"]
    log_weights: Float[Array, " n"]
    cycle: Int[Array, ""]


class Diagnostics(eqx.Module):
    """Per-cycle diagnostics.

    - `ess`: effective sample size of the weights used to resample (before resampling).
    - `alpha`: the tempering exponent of those weights (1 = no inflation).
    - `log_likelihood`: the filter's estimate of ``log p(y[k] | y[:k])``.
    - `dropped`: particles dropped for being non-finite and replaced by resampling the
      finite ones (``assimilate(..., on_nonfinite="resample")``; otherwise 0).

    Scalars within a cycle; arrays with a leading time axis in a [`FilterOutput`][].
    """

    ess: Float[Array, "*T"]
    alpha: Float[Array, "*T"]
    log_likelihood: Float[Array, "*T"]
    dropped: Int[Array, "*T"] | int = 0


class AbstractFilter(eqx.Module):
    """A sequential Monte Carlo filter over a diffusion emulator.

    Every filter declares the fields its callers read: the `emulator` it propagates with
    and the `observation` model it assimilates (None only for a filter that assimilates
    nothing, the unconditional [`assimilax.EnsembleForecast`][assimilax.filters.forecast.EnsembleForecast] without one).
    """

    emulator: AbstractVar[AbstractEmulator]
    observation: AbstractVar[ObservationModel | None]

    @abc.abstractmethod
    def step(
        self,
        state: FilterState,
        y: Float[Array, " p"],
        key: PRNGKeyArray,
        forcing: PyTree = None,
    ) -> tuple[FilterState, Diagnostics]:
        """Assimilate the observation `y` of the next time."""

    def init(self, particles: Float[ArrayLike, "n m d"] | Float[ArrayLike, "n d"]) -> FilterState:
        """The initial, equally weighted state of `particles`.

        Accepts ``(n, d)`` for history length 1, or ``(n, m, d)``.  Raises an
        [`assimilax.errors.InvalidData`][] (a `ValueError`) naming the problem for a wrong
        shape or non-finite values.
        """
        emulator = self.emulator
        p = jnp.asarray(particles)
        m, d = emulator.history_length, emulator.state_size
        if p.ndim == 2 and m == 1:
            p = p[:, None, :]
        if p.ndim != 3 or p.shape[1:] != (m, d):
            raise InvalidData(
                f"initial particles have shape {tuple(jnp.shape(particles))}; expected "
                f"(n_particles, {m}, {d})" + (f" or (n_particles, {d})" if m == 1 else "")
                + f" for an emulator with history length {m} and state size {d}."
            )
        if p.shape[0] < 1:
            raise InvalidData("initial ensemble is empty.")
        if not np.all(np.isfinite(np.asarray(p))):
            bad = np.argwhere(~np.isfinite(np.asarray(p)))[0]
            raise InvalidData(
                f"initial particles contain NaN or inf (first at particle {bad[0]}, history "
                f"{bad[1]}, component {bad[2]})."
            )
        if not jnp.issubdtype(p.dtype, jnp.floating):
            p = p.astype(jnp.result_type(float))
        return FilterState(p, jnp.zeros(p.shape[0], p.dtype), jnp.asarray(0))


def check_observations(
    observation: ObservationModel | None,
    observations: ArrayLike,
    state_size: int,
    dtype: object = None,
) -> None:
    """Validate a ``(T, p)`` observation sequence against the observation model.

    `dtype` is the working dtype the observations are cast to, the particles' (default:
    the default float dtype); values beyond its range (a float64 1e39 against float32
    particles) are refused, as they would become inf.  Raises an
    [`assimilax.errors.InvalidData`][] naming the time and observation index of the first
    bad value (see [`assimilax.ObservationModel.check`][assimilax.observations.ObservationModel.check]).

    Shapes are checked always; values only when concrete (not inside a caller's `jit`).
    """
    shape = jnp.shape(observations)
    if len(shape) != 2:
        raise InvalidData(f"observations must have shape (times, obs_size), got {shape}.")
    if observation is not None:
        observation.check(observations, state_size, dtype=dtype)


def check_step(
    filt: AbstractFilter,
    state: FilterState,
    y: ArrayLike,
    min_particles: int = 1,
    tempering: AbstractTempering | None = None,
) -> None:
    """What every filter's `step` checks at trace time, before anything runs.

    - `y` has shape ``(obs_size,)`` (an [`assimilax.errors.InvalidData`][] otherwise: a
      wrong length would broadcast silently);
    - the operator acts on the particles' state size (and a
      [`assimilax.FunctionOperator`][assimilax.observations.FunctionOperator] returns
      `obs_size` values for it);
    - at least `min_particles` particles (2 for the ensemble Kalman filters, whose
      anomalies divide by ``n - 1``) and a tempering rule that can reach its ESS band
      with them (an [`assimilax.errors.InvalidArgument`][] otherwise).

    Shapes are static, so these are Python checks even inside `jit`.
    """
    name = type(filt).__name__
    n = state.particles.shape[0]
    if n < min_particles:
        raise InvalidArgument(
            f"{name}: n_particles = {n}: must be at least {min_particles}"
            + (" (the ensemble anomalies need n >= 2)" if min_particles == 2 else "")
            + "."
        )
    observation = filt.observation
    if observation is not None:
        if jnp.shape(y) != (observation.obs_size,):
            raise InvalidData(
                f"{name}.step: y has shape {jnp.shape(y)}: must be ({observation.obs_size},), one "
                f"value per observation of {type(observation.operator).__name__} (NaN where missing)."
            )
        observation.operator.check_state_size(state.particles.shape[-1])
    if tempering is not None:
        tempering.check_particles(n)
