"""Long runs: one jitted step per cycle, a progress bar, checkpoints and resume.

[`assimilax.filter_scan`][] compiles a whole run into one scan; `assimilate` instead calls
one compiled ``step`` per observation time from Python, so that it can show progress,
save a checkpoint every few cycles and resume from one.  Both use the per-cycle key
``fold_in(key, cycle)``, so a resumed run reproduces the uninterrupted one exactly and
agrees with `filter_scan` to floating-point rounding.

By default every cycle's analysis ensemble comes back to the host, ``T x n x d`` numbers
in all.  With ``keep="moments"`` only its weighted mean and variance do (a
[`FilterMoments`][], ``T x 2 x d``), computed inside the compiled step: for GenCast at
0.25 degrees (``d`` about 87 M) that is what fits in host memory.
"""

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree
from tqdm.auto import tqdm

from . import metrics
from .filters.base import AbstractFilter, Diagnostics, FilterState, check_observations
from .filters.run import FilterOutput, cycle_key
from .resampling import normalise

_DIAGNOSTICS = ("ess", "alpha", "log_likelihood")
_KEPT = {"ensemble": ("particles", "log_weights"), "moments": ("mean", "variance")}


class FilterMoments(eqx.Module):
    """The weighted mean and variance of the analysis ensemble at every observation time.

    What [`assimilate`][] returns with ``keep="moments"``; the arrays stay on the host
    (NumPy) unless given as JAX arrays.

    - `mean`: ``(T, d)``, ``m = sum_i w_i x_i`` ([`assimilax.metrics.ensemble_mean`][]).
    - `variance`: ``(T, d)``, ``sum_i w_i (x_i - m)^2 / (1 - sum_i w_i^2)``, the ddof = 1
      variance of [`assimilax.metrics.ensemble_variance`][] (what `spread` averages).
    - `diagnostics`: a `Diagnostics` whose fields have a leading time axis ``T``.
    """

    mean: Float[np.ndarray | Array, "*T d"]
    variance: Float[np.ndarray | Array, "*T d"]
    diagnostics: Diagnostics


def _fingerprint(state: FilterState, observations: np.ndarray, key: PRNGKeyArray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(observations).tobytes())
    h.update(str(state.particles.shape).encode())
    h.update(np.asarray(jax.random.key_data(key)).tobytes())
    return h.hexdigest()


def _save(
    path: Path, fingerprint: str, state: FilterState, done: int, history: dict, keep: str = "ensemble"
) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            fingerprint=np.asarray(fingerprint),
            keep=np.asarray(keep),
            done=np.asarray(done),
            state_particles=np.asarray(state.particles),
            state_log_weights=np.asarray(state.log_weights),
            state_cycle=np.asarray(state.cycle),
            **{k: np.stack(v) for k, v in history.items() if v},
        )
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


def _load(path: Path, fingerprint: str, keep: str):
    with np.load(path) as data:
        if str(data["fingerprint"]) != fingerprint:
            raise ValueError(
                f"checkpoint {path} belongs to a different run (other observations, ensemble "
                "size or key); delete it or choose another checkpoint path."
            )
        saved = str(data["keep"]) if "keep" in data else "ensemble"  # older files: ensembles
        if saved != keep:
            raise ValueError(
                f"checkpoint {path} was written with keep={saved!r}, this run asks for "
                f"keep={keep!r}; use the same `keep` or another checkpoint path."
            )
        done = int(data["done"])
        state = FilterState(
            jnp.asarray(data["state_particles"]),
            jnp.asarray(data["state_log_weights"]),
            jnp.asarray(data["state_cycle"]),
        )
        history = {k: list(data[k]) if k in data else [] for k in _KEPT[keep] + _DIAGNOSTICS}
    return state, done, history


def assimilate(
    filt: AbstractFilter,
    state: FilterState,
    observations: Float[ArrayLike, "T p"],
    key: PRNGKeyArray,
    forcings: PyTree = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    progress: bool = True,
    description: str | None = None,
    on_cycle: Callable[[int, Diagnostics, float], None] | None = None,
    keep: Literal["ensemble", "moments"] = "ensemble",
) -> tuple[FilterState, FilterOutput | FilterMoments]:
    """Run `filt` over ``observations[t]``, ``t = 0..T-1``, one compiled step per cycle.

    **Arguments:**

    - `filt`, `state`, `observations`, `key`, `forcings`: as for [`assimilax.filter_scan`][].
    - `checkpoint`: a file path; the run is saved there every `checkpoint_every` cycles
      and at the end, and resumed from it if it exists (the checkpoint records a
      fingerprint of the observations, ensemble shape and key, and refuses another run's).
    - `progress`: show a progress bar with the ESS and the tempering alpha.
    - `description`: the progress bar's label.
    - `on_cycle`: called after each cycle with ``(cycle, diagnostics, seconds)``, the
      wall time of that cycle (the first one includes compilation).
    - `keep`: what of each cycle's analysis comes back to the host: ``"ensemble"`` (the
      particles ``(n, d)`` and their log-weights) or ``"moments"`` (their weighted mean
      and variance ``(d,)`` each, computed in the compiled step).  The checkpoint holds
      the current state either way, and the kept history.

    **Returns:** the final state and, for ``"ensemble"``, a [`assimilax.FilterOutput`][]
    (a JAX array per field, ``(T, n, d)`` particles); for ``"moments"``, a
    [`FilterMoments`][] of NumPy arrays ``(T, d)``.
    """
    if keep not in _KEPT:
        raise ValueError(f"keep must be 'ensemble' or 'moments', got {keep!r}.")
    check_observations(getattr(filt, "observation", None), observations, filt.emulator.state_size)
    obs = np.asarray(observations, dtype=np.asarray(state.particles).dtype)
    fingerprint = _fingerprint(state, obs, key)
    path = None if checkpoint is None else Path(checkpoint)
    fields = _KEPT[keep] + _DIAGNOSTICS
    history = {k: [] for k in fields}
    done = 0
    if path is not None and path.exists():
        state, done, history = _load(path, fingerprint, keep)

    @eqx.filter_jit
    def step(state, y, forcing):
        state, diag = filt.step(state, y, cycle_key(key, state.cycle), forcing)
        x, log_w = state.particles[:, -1], normalise(state.log_weights)
        if keep == "moments":  # reduced on the device: only 2 x d numbers leave it
            w = jnp.exp(log_w)
            kept = (metrics.ensemble_mean(x, w), metrics.ensemble_variance(x, w))
        else:
            kept = (x, log_w)
        return state, kept + (diag.ess, diag.alpha, diag.log_likelihood), diag

    n_times = obs.shape[0]
    bar = tqdm(total=n_times, initial=done, disable=not progress, desc=description, unit="cycle")
    for t in range(done, n_times):
        start = time.perf_counter()
        forcing = None if forcings is None else jax.tree.map(lambda a: a[t], forcings)
        state, kept, diag = step(state, jnp.asarray(obs[t]), forcing)
        for name, value in zip(fields, kept):
            history[name].append(np.asarray(value))  # blocks until the cycle is done
        if on_cycle is not None:
            on_cycle(t, diag, time.perf_counter() - start)
        bar.update(1)
        bar.set_postfix(ess=f"{float(diag.ess):.0f}", alpha=f"{float(diag.alpha):.3g}")
        if path is not None and ((t + 1) % checkpoint_every == 0 or t + 1 == n_times):
            _save(path, fingerprint, state, t + 1, history, keep)
    bar.close()
    stacked = {k: np.stack(v) for k, v in history.items()}
    diagnostics = Diagnostics(*(jnp.asarray(stacked[k]) for k in _DIAGNOSTICS))
    if keep == "moments":
        return state, FilterMoments(stacked["mean"], stacked["variance"], diagnostics)
    particles, log_weights = (jnp.asarray(stacked[k]) for k in _KEPT["ensemble"])
    return state, FilterOutput(particles, log_weights, diagnostics)
