"""Filter results as labelled data: xarray Datasets with coordinates and attributes.

[`to_dataset`][] turns a [`assimilax.FilterOutput`][assimilax.filters.run.FilterOutput] into a Dataset with ``time`` and
``particle`` dimensions (and the state's own dimensions from a
[`assimilax.StateLayout`][assimilax.layout.StateLayout]), the per-cycle diagnostics, and the filter's full
configuration in the attributes; [`scores`][] computes skill, spread, spread/skill and
CRPS per cycle against a truth, over all components or a subset.  Both also take the
[`FilterMoments`][assimilax.assimilate.FilterMoments] of ``assimilate(..., keep="moments")``
(mean and variance instead of particles; no CRPS, which needs the ensemble).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import ArrayLike, Bool, Float

from . import metrics
from .assimilate import FilterMoments
from .filters.base import AbstractFilter
from .filters.run import FilterOutput
from .layout import StateLayout


def describe(filt: AbstractFilter) -> str:
    """The filter's configuration as text (every module and parameter, arrays summarised)."""
    return eqx.tree_pformat(filt, short_arrays=True)


def to_dataset(
    output: FilterOutput | FilterMoments,
    layout: StateLayout | None = None,
    times: Sequence | np.ndarray | None = None,
    filt: AbstractFilter | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """A Dataset of the analysis ensembles and diagnostics of a run.

    **Arguments:**

    - `output`: from [`assimilax.filter_scan`][assimilax.filters.run.filter_scan] or [`assimilax.assimilate`][assimilax.assimilate.assimilate].  A
      `FilterMoments` gives, for each variable ``v`` of the layout, ``v_mean`` and
      ``v_variance`` over ``time`` instead of the ensemble ``v`` over ``time, particle``
      (and no ``log_weights``).
    - `layout`: how the flat state maps to variables; default one vector variable ``x``
      with dimension ``variable``.
    - `times`: coordinate of the ``time`` dimension (default ``0..T-1``).
    - `filt`: the filter, whose configuration is recorded in the attribute ``filter``.
    - `attrs`: further attributes (scalars or strings; anything else is stored as text).
    """
    moments = isinstance(output, FilterMoments)
    first = np.asarray(output.mean if moments else output.particles)
    n_times, size = first.shape[0], first.shape[-1]
    vector = layout is None
    layout = StateLayout.vector(size) if vector else layout
    times = np.arange(n_times) if times is None else np.asarray(times)
    if moments:
        parts = []
        for stat, values in (("mean", output.mean), ("variance", output.variance)):
            part = layout.unflatten(np.asarray(values), sample_dims=("time",), sample_coords={"time": times})
            for name in part.data_vars:
                part[name].attrs["long_name"] = f"weighted ensemble {stat} of {name}"
            parts.append(part.rename({name: f"{name}_{stat}" for name in part.data_vars}))
        ds = xr.merge(parts, combine_attrs="override")
    else:
        n_particles = first.shape[1]
        ds = layout.unflatten(
            first,
            sample_dims=("time", "particle"),
            sample_coords={"time": times, "particle": np.arange(n_particles)},
        )
    if vector:
        ds = ds.assign_coords(variable=np.arange(size))
    diag = output.diagnostics
    if not moments:
        ds["log_weights"] = (("time", "particle"), np.asarray(output.log_weights))
        ds["log_weights"].attrs["long_name"] = "normalised log-weights of the analysis particles"
    ds["ess"] = ("time", np.asarray(diag.ess))
    ds["alpha"] = ("time", np.asarray(diag.alpha))
    ds["log_likelihood"] = ("time", np.asarray(diag.log_likelihood))
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
    output: FilterOutput | FilterMoments,
    truth: Float[ArrayLike, "T d"],
    components: Bool[ArrayLike, " d"] | None = None,
    area_weights: Float[ArrayLike, " d"] | None = None,
) -> dict[str, np.ndarray]:
    """Per-cycle skill (RMSE of the weighted mean), spread, spread/skill and CRPS.

    `components` selects a subset of the state (e.g. the observed or unobserved
    components); `area_weights` (e.g. latitude weights of the flat state) weight the
    average over components, a zero weight masking a component out
    ([`assimilax.metrics.area_scores`][]).  Returns arrays of shape ``(T,)``; from a
    `FilterMoments` skill, spread and spread/skill only (the same numbers, to float rounding).
    """
    moments = isinstance(output, FilterMoments)
    first = jnp.asarray(output.mean if moments else output.particles)
    truth = jnp.asarray(truth)
    if truth.shape != (first.shape[0], first.shape[-1]):
        raise ValueError(
            f"truth has shape {truth.shape}, expected (times, state) = "
            f"{(first.shape[0], first.shape[-1])}."
        )
    second = jnp.asarray(output.variance if moments else output.log_weights)
    if components is not None:
        idx = np.flatnonzero(np.asarray(components))
        first, truth = first[..., idx], truth[..., idx]
        second = second[..., idx] if moments else second
        area_weights = None if area_weights is None else jnp.asarray(area_weights)[idx]
    s = {k: np.asarray(v) for k, v in metrics.area_scores(first, second, truth, area_weights).items()}
    return {"skill": s["skill"], "spread": s["spread"], "spread_skill": s["spread"] / s["skill"], **s}
