"""Running a filter over a sequence of observation times with `jax.lax.scan`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from ..errors import NonFiniteError
from ..resampling import normalise
from ..sharding import ParticleLayout
from .base import AbstractFilter, Diagnostics, FilterState, check_observations


class FilterOutput(eqx.Module):
    """The filter's ensembles and diagnostics at every observation time.

    - `particles`: ``(T, n, d)``, the analysis ensemble (the newest state of each history).
    - `log_weights`: ``(T, n)``, their normalised log-weights.
    - `diagnostics`: a [`Diagnostics`][] whose fields have a leading time axis ``T``.
    """

    particles: Float[Array, "*T n d"]
    log_weights: Float[Array, "*T n"]
    diagnostics: Diagnostics


def cycle_key(key: PRNGKeyArray, cycle: ArrayLike) -> PRNGKeyArray:
    """The key of one cycle, ``fold_in(key, cycle)``: runs that resume give the same draws."""
    return jax.random.fold_in(key, cycle)


@eqx.filter_jit
def _scan(filt, state, observations, key, forcings, layout):
    def body(state, inputs):
        y, forcing = inputs
        state, diag = filt.step(state, y, cycle_key(key, state.cycle), forcing)
        state = FilterState(
            layout.constrain(state.particles, sharded=True),
            layout.constrain(state.log_weights, sharded=False),
            state.cycle,
        )
        out = FilterOutput(state.particles[:, -1], normalise(state.log_weights), diag)
        return state, out

    with layout.active():
        return jax.lax.scan(body, state, (observations, forcings))


def filter_scan(
    filt: AbstractFilter,
    state: FilterState,
    observations: Float[ArrayLike, "T p"],
    key: PRNGKeyArray,
    forcings: PyTree = None,
    layout: ParticleLayout | None = None,
) -> tuple[FilterState, FilterOutput]:
    """Assimilate ``observations[t]`` for ``t = 0..T-1`` in one compiled scan.

    **Arguments:**

    - `filt`: any filter.
    - `state`: from ``filt.init(particles)`` (or a previous run, to continue it).
    - `observations`: ``(T, p)``, NaN where missing.
    - `key`: the run's key; cycle ``c`` uses ``fold_in(key, c)``.
    - `forcings`: a pytree with leading axis ``T``, or None.
    - `layout`: a [`assimilax.sharding.ParticleLayout`][] (devices and chunk size); the
      state is placed with it.  Default: one device, one `vmap` over all particles.

    **Returns:** the final state and a [`FilterOutput`][].
    """
    check_observations(
        filt.observation, observations, filt.emulator.state_size, state.particles.dtype
    )
    layout = ParticleLayout() if layout is None else layout
    layout.check_particles(state.particles.shape[0])
    observations = layout.put(jax.numpy.asarray(observations, state.particles.dtype), sharded=False)
    state = FilterState(
        layout.put(state.particles, sharded=True),
        layout.put(state.log_weights, sharded=False),
        layout.put(state.cycle, sharded=False),
    )
    if layout.mesh is not None:
        key = layout.put(key, sharded=False)
        forcings = layout.put(forcings, sharded=False)
    final, out = _scan(filt, state, observations, key, forcings, layout)
    _check_finite(filt, out)
    return final, out


def _check_finite(filt: AbstractFilter, out: FilterOutput) -> None:
    """Raise a `NonFiniteError` naming the first cycle whose analysis holds NaN or inf.

    Only per-cycle flags come to the host; skipped inside a caller's `jit` (tracers).
    """
    if isinstance(out.particles, jax.core.Tracer):
        return
    d = out.diagnostics
    parts = {
        "particles": jnp.all(jnp.isfinite(out.particles), axis=(1, 2)),
        "weights": jnp.all(jnp.isfinite(out.log_weights), axis=1),
        "ess": jnp.isfinite(d.ess),
        "alpha": jnp.isfinite(d.alpha),
    }
    if filt.observation is not None:  # without one the evidence is NaN by definition
        parts["log_likelihood"] = jnp.isfinite(d.log_likelihood)
    flags = {k: np.asarray(v) for k, v in parts.items()}
    bad = np.flatnonzero(~np.all(np.stack(list(flags.values())), axis=0))
    if bad.size:
        t = int(bad[0])
        raise NonFiniteError(
            type(filt).__name__, t, tuple(k for k, v in flags.items() if not v[t]),
            "filter_scan; assimilate(...) keeps the cycles before it in a checkpoint",
        )
