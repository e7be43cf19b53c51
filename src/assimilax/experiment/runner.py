"""Run several filters on the same ensemble and observations, as one job."""

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import jax
import numpy as np
from jaxtyping import ArrayLike, Float, PRNGKeyArray, PyTree

from ..assimilate import FilterMoments, assimilate
from ..errors import InvalidArgument, NonFiniteError
from ..filters.base import AbstractFilter, check_observations
from ..filters.run import FilterOutput
from ..sharding import ParticleLayout


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


def run_filters(
    filters: Mapping[str, AbstractFilter],
    ensemble: Float[ArrayLike, "n *history d"],
    observations: Float[ArrayLike, "T p"],
    key: PRNGKeyArray,
    forcings: PyTree = None,
    *,
    checkpoints: str | os.PathLike | None = None,
    restart: bool = False,
    progress: bool = True,
    keep: Literal["ensemble", "moments"] = "ensemble",
    layout: ParticleLayout | None = None,
    on_nonfinite: Literal["stop", "resample"] = "stop",
    checkpoint_every: int = 10,
) -> FilterRuns:
    """Run each filter from ``filt.init(ensemble)`` over `observations`, with the same `key`.

    **Arguments:**

    - `filters`: ``{name: filter}``; names label the progress bars, the checkpoints
      ``<checkpoints>/<name>.npz`` and the results.
    - `ensemble`, `observations`, `key`, `forcings`: as for [`assimilax.assimilate`][].
    - `checkpoints`: a folder (created if missing); each filter checkpoints there every
      `checkpoint_every` cycles and resumes from it.  `restart`: start afresh where a
      checkpoint belongs to another run (else it is refused, naming what differs).
    - `keep`, `layout`, `on_nonfinite`: as for [`assimilax.assimilate`][].

    A filter whose analysis turns non-finite is recorded in `failures` and the next filter
    runs; every other error stops the job.  Every filter is initialised (its ensemble
    checked) before the first one runs.
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise InvalidArgument(f"checkpoint_every = {checkpoint_every!r}: must be a positive integer.")
    for filt in filters.values():  # every filter's inputs, before any cycle runs
        check_observations(filt.observation, observations, filt.emulator.state_size)
    folder = None if checkpoints is None else Path(checkpoints)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    states = {name: filt.init(ensemble) for name, filt in filters.items()}
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
                None if forcings is None else jax.tree.map(jax.numpy.asarray, forcings),
                checkpoint=None if folder is None else folder / f"{name}.npz",
                checkpoint_every=checkpoint_every,
                checkpoint_mismatch="restart" if restart else "error",
                progress=progress,
                description=f"{name:>{width}}",
                name=name,
                on_cycle=lambda t, d, s, times=times: times.append(s),
                keep=keep,
                layout=layout,
                on_nonfinite=on_nonfinite,
            )
        except NonFiniteError as error:
            failures[name] = str(error)
        seconds[name] = times
    return FilterRuns(results, {n: seconds[n] for n in results}, failures)


def failed_lines(ds) -> list[str]:
    """One summary line per filter that failed, from ``ds.attrs["failed_filters"]`` (JSON)."""
    import json

    failed = json.loads(ds.attrs.get("failed_filters", "{}"))
    return [f"FAILED {name}: {message}" for name, message in failed.items()]
