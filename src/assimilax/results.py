"""Filter results as labelled data: xarray Datasets with coordinates and attributes.

[`to_dataset`][] turns a [`assimilax.FilterOutput`][] into a Dataset with ``time`` and
``particle`` dimensions (and the state's own dimensions from a
[`assimilax.StateLayout`][]), the per-cycle diagnostics, and the filter's full
configuration in the attributes; [`scores`][] computes skill, spread, spread/skill and
CRPS per cycle against a truth, over all components or a subset.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import ArrayLike, Bool, Float

from . import metrics
from .filters.base import AbstractFilter
from .filters.run import FilterOutput
from .layout import StateLayout


def describe(filt: AbstractFilter) -> str:
    """The filter's configuration as text (every module and parameter, arrays summarised)."""
    return eqx.tree_pformat(filt, short_arrays=True)


def to_dataset(
    output: FilterOutput,
    layout: StateLayout | None = None,
    times: Sequence | np.ndarray | None = None,
    filt: AbstractFilter | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """A Dataset of the analysis ensembles and diagnostics of a run.

    **Arguments:**

    - `output`: from [`assimilax.filter_scan`][] or [`assimilax.assimilate`][].
    - `layout`: how the flat state maps to variables; default one vector variable ``x``
      with dimension ``variable``.
    - `times`: coordinate of the ``time`` dimension (default ``0..T-1``).
    - `filt`: the filter, whose configuration is recorded in the attribute ``filter``.
    - `attrs`: further attributes (scalars or strings; anything else is stored as text).
    """
    particles = np.asarray(output.particles)
    n_times, n_particles, size = particles.shape
    vector = layout is None
    layout = StateLayout.vector(size) if vector else layout
    times = np.arange(n_times) if times is None else np.asarray(times)
    ds = layout.unflatten(
        particles,
        sample_dims=("time", "particle"),
        sample_coords={"time": times, "particle": np.arange(n_particles)},
    )
    if vector:
        ds = ds.assign_coords(variable=np.arange(size))
    diag = output.diagnostics
    ds["log_weights"] = (("time", "particle"), np.asarray(output.log_weights))
    ds["ess"] = ("time", np.asarray(diag.ess))
    ds["alpha"] = ("time", np.asarray(diag.alpha))
    ds["log_likelihood"] = ("time", np.asarray(diag.log_likelihood))
    ds["log_weights"].attrs["long_name"] = "normalised log-weights of the analysis particles"
    ds["ess"].attrs["long_name"] = "effective sample size of the resampling weights"
    ds["alpha"].attrs["long_name"] = "tempering exponent (inflation R / alpha)"
    ds["log_likelihood"].attrs["long_name"] = "estimate of log p(y[k] | y[:k])"
    if filt is not None:
        ds.attrs["filter_class"] = type(filt).__name__
        ds.attrs["filter"] = describe(filt)
    for key, value in (attrs or {}).items():
        ds.attrs[key] = value if isinstance(value, (str, int, float, np.number)) else repr(value)
    return ds


def scores(
    output: FilterOutput,
    truth: Float[ArrayLike, "T d"],
    components: Bool[ArrayLike, " d"] | None = None,
    area_weights: Float[ArrayLike, " d"] | None = None,
) -> dict[str, np.ndarray]:
    """Per-cycle skill (RMSE of the weighted mean), spread, spread/skill and CRPS.

    `components` selects a subset of the state (e.g. the observed or unobserved
    components); `area_weights` (e.g. latitude weights of the flat state) weight the
    average over components.  Returns arrays of shape ``(T,)``.
    """
    particles = jnp.asarray(output.particles)
    truth = jnp.asarray(truth)
    if truth.shape != (particles.shape[0], particles.shape[2]):
        raise ValueError(
            f"truth has shape {truth.shape}, expected (times, state) = "
            f"{(particles.shape[0], particles.shape[2])}."
        )
    if components is not None:
        idx = np.flatnonzero(np.asarray(components))
        particles, truth = particles[..., idx], truth[..., idx]
        area_weights = None if area_weights is None else jnp.asarray(area_weights)[idx]
    weights = jnp.exp(jnp.asarray(output.log_weights))

    def per_cycle(ens, w, x):
        return (
            metrics.skill(ens, x, w, area_weights),
            metrics.spread(ens, w, area_weights),
            metrics.crps(ens, x, w, area_weights),
        )

    skill, spread, crps = jax.vmap(per_cycle)(particles, weights, truth)
    skill, spread, crps = (np.asarray(a) for a in (skill, spread, crps))
    return {"skill": skill, "spread": spread, "spread_skill": spread / skill, "crps": crps}
