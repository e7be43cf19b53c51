"""Run several filters on the same ensemble and observations, as one job."""

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import jax
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, PRNGKeyArray, PyTree

from .. import metrics

from ..assimilate import FilterMoments, assimilate, check_checkpoint
from ..errors import NonFiniteError, RunFailed
from ..filters.base import AbstractFilter, check_observations
from ..filters.run import FilterOutput
from ..layout import StateLayout
from ..results import describe, scores, to_dataset
from .options import RunOptions

if TYPE_CHECKING:
    import xarray as xr


@dataclasses.dataclass(frozen=True)
class FilterRuns:
    """The outcome of [`run_filters`][], filter by filter, in the order given.

    - `results`: ``{name: FilterOutput or FilterMoments}`` of the filters that finished.
    - `seconds`: ``{name: [wall time of each cycle run in this call]}`` (the first one
      includes compilation; cycles resumed from a checkpoint are not timed).
    - `failures`: ``{name: message}`` of the filters that stopped on a non-finite analysis
      ([`assimilax.errors.NonFiniteError`][]); their checkpoints keep the cycles before.
    """

    results: dict[str, FilterOutput | FilterMoments]
    seconds: dict[str, list[float]]
    failures: dict[str, str]

    def seconds_per_cycle(self, name: str, cycles: int) -> Float[np.ndarray, " T"]:
        """The filter's per-cycle wall times ``(cycles,)``, NaN for cycles resumed."""
        s = self.seconds[name]
        return np.asarray([np.nan] * (cycles - len(s)) + list(s), dtype=np.float64)

    def to_dataset(
        self,
        filters: Mapping[str, AbstractFilter],
        truth: Float[ArrayLike, "T d"] | None = None,
        layout: StateLayout | None = None,
        times: Sequence | np.ndarray | None = None,
        *,
        subsets: Mapping[str, Bool[ArrayLike, " d"]] | None = None,
        ensembles: bool = True,
    ) -> "xr.Dataset":
        """One Dataset of every finished filter, with a ``filter`` dimension.

        Each filter's [`assimilax.to_dataset`][assimilax.results.to_dataset] (its analysis
        ensembles, or with ``ensembles=False`` their weighted mean and variance ``v_mean``,
        ``v_variance``; log-weights, ESS, alpha, log-likelihood), its ``dropped`` counts
        and per-cycle wall ``seconds``, concatenated along ``filter``.  With `truth`
        ``(T, d)``: the per-cycle ``skill``, ``spread`` and ``crps`` of
        [`assimilax.scores`][assimilax.results.scores] over all components, or over each
        of `subsets` ``{name: mask}`` as ``skill_<name>``, ...  Each filter's
        configuration is the attribute ``filter_<name>``.
        """
        import pandas as pd
        import xarray as xr

        names = list(self.results)
        parts = []
        for name in names:
            out = self.results[name]
            if not ensembles and isinstance(out, FilterOutput):
                w = jax.numpy.exp(out.log_weights)
                out = FilterMoments(
                    np.asarray(jax.vmap(metrics.ensemble_mean)(out.particles, w)),
                    np.asarray(jax.vmap(metrics.ensemble_variance)(out.particles, w)),
                    out.diagnostics,
                )
            ds = to_dataset(out, layout, times)
            ds["dropped"] = ("time", np.asarray(out.diagnostics.dropped))
            ds["seconds"] = ("time", self.seconds_per_cycle(name, ds.sizes["time"]))
            if truth is not None:
                for subset, mask in (subsets or {"": None}).items():
                    per = scores(self.results[name], truth, mask)
                    for score in ("skill", "spread", "crps"):
                        if score in per:
                            ds[f"{score}_{subset}" if subset else score] = ("time", per[score])
            parts.append(ds)
        ds = xr.concat(parts, dim=pd.Index(names, name="filter"), combine_attrs="drop_conflicts")
        ds["dropped"].attrs["long_name"] = "non-finite particles dropped and replaced by resampling (on_nonfinite='resample')"
        ds["seconds"].attrs["long_name"] = "wall time of the cycle (the first includes compilation; NaN: resumed)"
        for var in ds.data_vars:
            if var.split("_")[0] in ("skill", "spread", "crps"):
                ds[var].attrs["long_name"] = _SCORE_NAMES[var.split("_")[0]]
        ds.attrs.update({f"filter_{n}": describe(filters[n]) for n in names})
        return ds


_SCORE_NAMES = {
    "skill": "RMSE of the weighted ensemble mean against the truth",
    "spread": "square root of the mean weighted ensemble variance",
    "crps": "mean ensemble CRPS of the components",
}


def run_filters(
    filters: Mapping[str, AbstractFilter],
    ensemble: Float[ArrayLike, "n *history d"],
    observations: Float[ArrayLike, "T p"],
    key: PRNGKeyArray,
    forcings: PyTree = None,
    *,
    checkpoints: str | os.PathLike | None = None,
    options: RunOptions = RunOptions(),
    keep: Literal["ensemble", "moments"] = "ensemble",
) -> FilterRuns:
    """Run each filter from ``filt.init(ensemble)`` over `observations`, with the same `key`.

    **Arguments:**

    - `filters`: ``{name: filter}``; names label the progress bars, the checkpoints
      ``<checkpoints>/<name>.npz`` and the results.
    - `ensemble`, `observations`, `key`, `forcings`, `keep`: as for
      [`assimilax.assimilate`][assimilax.assimilate.assimilate].
    - `checkpoints`: a folder (created if missing); each filter checkpoints there every
      `options.checkpoint_every` cycles and resumes from it.
    - `options`: a [`RunOptions`][assimilax.experiment.options.RunOptions].

    A filter whose analysis turns non-finite is recorded in `failures` and the next filter
    runs; every other error stops the job.  Every filter's ensemble and observations are
    checked before the first one runs.
    """
    for filt in filters.values():  # every filter's inputs, before any cycle runs
        check_observations(filt.observation, observations, filt.emulator.state_size)
    folder = None if checkpoints is None else Path(checkpoints)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    states = {name: filt.init(ensemble) for name, filt in filters.items()}
    forcings = None if forcings is None else jax.tree.map(jax.numpy.asarray, forcings)
    if folder is not None:  # every checkpoint refused or accepted before any filter runs
        for name, filt in filters.items():
            check_checkpoint(
                filt, states[name], observations, key, forcings, checkpoint=folder / f"{name}.npz",
                checkpoint_every=options.checkpoint_every,
                checkpoint_mismatch="restart" if options.restart else "error", keep=keep,
            )
    width = max((len(n) for n in filters), default=0)
    results, seconds, failures = {}, {}, {}
    for name, filt in filters.items():
        times: list[float] = []
        try:
            _, results[name] = assimilate(
                filt,
                states[name],
                observations,
                key,
                forcings,
                checkpoint=None if folder is None else folder / f"{name}.npz",
                checkpoint_every=options.checkpoint_every,
                checkpoint_mismatch="restart" if options.restart else "error",
                progress=options.progress,
                description=f"{name:>{width}}",
                name=name,
                on_cycle=lambda t, d, s, times=times: times.append(s),
                keep=keep,
                layout=options.layout,
                on_nonfinite=options.on_nonfinite,
            )
        except NonFiniteError as error:
            failures[name] = str(error)
        seconds[name] = times
    return FilterRuns(results, {n: seconds[n] for n in results}, failures)


def run_job(
    filters: Mapping[str, AbstractFilter],
    ensemble: Float[ArrayLike, "n *history d"],
    observations: Float[ArrayLike, "T p"],
    key: PRNGKeyArray,
    forcings: PyTree = None,
    *,
    dataset: Callable[[FilterRuns], "xr.Dataset"],
    output: str | os.PathLike | None = None,
    netcdf: str = "assimilation.nc",
    figures: Callable[["xr.Dataset", Path], None] | None = None,
    summary: Callable[["xr.Dataset"], str] | None = None,
    options: RunOptions = RunOptions(),
    keep: Literal["ensemble", "moments"] = "ensemble",
) -> "xr.Dataset":
    """A whole job: [`run_filters`][], the adapter's `dataset` of the runs, and with
    `output` the NetCDF ``<output>/<netcdf>``, the `figures` and ``summary.txt`` there
    (checkpoints in ``<output>/checkpoints``).

    Filters that failed are named in the Dataset's ``failed_filters`` attribute (JSON) and
    in the summary; after writing the others, [`assimilax.errors.RunFailed`][] is raised
    with the Dataset (also when no filter finished, without one).
    """
    out = None if output is None else Path(output)
    runs = run_filters(
        filters, ensemble, observations, key, forcings,
        checkpoints=None if out is None else out / "checkpoints", options=options, keep=keep,
    )
    if not runs.results:
        raise RunFailed(runs.failures)
    ds = dataset(runs)
    ds.attrs["failed_filters"] = json.dumps(runs.failures)
    if out is not None:
        ds.to_netcdf(out / netcdf)
        if figures is not None:
            figures(ds, out)
        if summary is not None:
            (out / "summary.txt").write_text(summary(ds))  # with its `failed_lines`
    if runs.failures:
        raise RunFailed(runs.failures, None if out is None else str(out), dataset=ds)
    return ds


def failed_lines(ds: "xr.Dataset") -> list[str]:
    """One summary line per filter that failed, from ``ds.attrs["failed_filters"]`` (JSON)."""
    failed = json.loads(ds.attrs.get("failed_filters", "{}"))
    return [f"FAILED {name}: {message}" for name, message in failed.items()]
